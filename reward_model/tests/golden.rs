//! Rewards and losses against TRL 1.16's `RewardTrainer` / transformers 5.24 on the tiny
//! fixture reward model (`fixtures/goldens/reward.json`, made by `scripts/make_pref_goldens.py`).
mod common;

use candle_core::{Device, Tensor};
use common::{assert_close, floats, golden_rows, goldens, ids};
use lm::{InputBatch, LoadOptions};
use reward_model::{batch_metrics, pairwise_loss, reward_index, RewardModel};

fn load_rm() -> RewardModel {
    let dir = common::fixtures().join("tiny-llama-rm");
    RewardModel::load(dir.to_str().unwrap_or_default(), &LoadOptions::default())
        .expect("load tiny-llama-rm")
}

// reward.json `rewards.unpadded`: "model(ids).logits" per sequence alone, order chosen_0..3,
// rejected_0..3; source.last_token_rule: "reward = score(h)[b, i*] with
// i* = argmax_i(i * (input_ids[b, i] != pad_token_id))".
#[test]
fn unpadded_rewards_match_transformers() {
    let g = goldens();
    let rm = load_rm();
    assert_eq!(rm.pad_id, 0);
    let rows = golden_rows(&g);
    let got: Vec<f32> = rows
        .iter()
        .map(|r| {
            rm.rewards(std::slice::from_ref(r), false)
                .and_then(|t| Ok(t.to_vec1::<f32>()?[0]))
                .expect("reward")
        })
        .collect();
    assert_close(&got, &floats(&g["rewards"]["unpadded"]), 1e-4, "unpadded");
}

// reward.json `rewards.right_padded` / `rewards.left_padded`: the same 8 rows padded with id 0
// to 106 tokens; transformers got `input_ids`, `attention_mask` (and for left padding
// `position_ids = cumsum(mask) - 1`).
#[test]
fn head_reads_the_right_token_under_left_and_right_padding() {
    let g = goldens();
    let rm = load_rm();
    let rows = golden_rows(&g);
    for (key, left) in [("right_padded", false), ("left_padded", true)] {
        let gold = &g["rewards"][key];
        // Our padded batch is exactly the one transformers saw.
        let batch = InputBatch::padded(&rows, rm.pad_id, left);
        let want_ids: Vec<u32> = gold["input_ids"]
            .as_array()
            .unwrap_or(&vec![])
            .iter()
            .flat_map(ids)
            .collect();
        let want_mask: Vec<u32> = gold["attention_mask"]
            .as_array()
            .unwrap_or(&vec![])
            .iter()
            .flat_map(ids)
            .collect();
        assert_eq!(batch.ids, want_ids, "{key} ids");
        assert_eq!(batch.segments, want_mask, "{key} mask");
        // The transformers rule applied to the PADDED row picks the token our per-row rule
        // picks, shifted by the left padding.
        for (i, r) in rows.iter().enumerate() {
            let padded = &batch.ids[i * batch.t..(i + 1) * batch.t];
            let offset = if left { batch.t - r.len() } else { 0 };
            assert_eq!(
                reward_index(padded, 0),
                offset + reward_index(r, 0),
                "{key} row {i}"
            );
            assert_eq!(
                reward_index(r, 0),
                r.len() - 1,
                "every golden row ends in <|im_end|>"
            );
        }
        let got = rm
            .rewards(&rows, left)
            .and_then(|t| Ok(t.to_vec1::<f32>()?))
            .expect("rewards");
        assert_close(&got, &floats(&gold["rewards"]), 1e-4, key);
    }
}

#[test]
fn trailing_pad_ids_are_skipped_like_transformers() {
    // A real row that ends in pad-id tokens (as when pad = eos, SmolLM2) is read before them,
    // and that is a different reward from reading the last token: the rule matters.
    let rm = load_rm();
    let g = goldens();
    let mut row = golden_rows(&g)[0].clone();
    let base = rm
        .rewards(std::slice::from_ref(&row), false)
        .and_then(|t| Ok(t.to_vec1::<f32>()?))
        .expect("r");
    row.extend([0, 0]);
    assert_eq!(reward_index(&row, 0), row.len() - 3);
    let with_pad = rm
        .rewards(std::slice::from_ref(&row), true)
        .and_then(|t| Ok(t.to_vec1::<f32>()?))
        .expect("r");
    assert_close(&with_pad, &base, 1e-4, "reward before the trailing pads");
    let shorter = &row[..row.len() - 3];
    let other = rm
        .rewards(&[shorter.to_vec()], false)
        .and_then(|t| Ok(t.to_vec1::<f32>()?))
        .expect("r");
    assert!(
        (other[0] - base[0]).abs() > 1e-3,
        "a different token gives a different reward"
    );
}

// reward.json `losses[]`: TRL `RewardTrainer.compute_loss` =
// `-logsigmoid(r_c - r_r [- margin]).mean() + coef * mean((r_c + r_r)**2)` on the batch of 4
// pairs, `per_pair_losses` from batches of 1; `metrics` from `trainer._metrics['eval']`.
#[test]
fn losses_and_metrics_match_trl() {
    let g = goldens();
    let rm = load_rm();
    let rows = golden_rows(&g);
    let r = rm.rewards(&rows, false).expect("rewards");
    let (rc, rr) = (r.narrow(0, 0, 4).expect("c"), r.narrow(0, 4, 4).expect("r"));
    let pairs = g["pairs"].as_array().cloned().unwrap_or_default();
    let margins: Vec<f32> = pairs
        .iter()
        .filter_map(|p| p["margin"].as_f64())
        .map(|m| m as f32)
        .collect();
    let margin_t = Tensor::new(margins.as_slice(), &Device::Cpu).expect("margin");
    let cases = g["losses"].as_array().cloned().unwrap_or_default();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let m = case["use_margin"]
            .as_bool()
            .unwrap_or(false)
            .then_some(&margin_t);
        let coef = case["center_rewards_coefficient"].as_f64();
        let loss = pairwise_loss(&rc, &rr, m, coef)
            .and_then(|l| Ok(l.to_scalar::<f32>()?))
            .expect("loss");
        assert_close(
            &[loss],
            &[case["loss"].as_f64().unwrap_or(f64::NAN) as f32],
            1e-4,
            name,
        );
        let per_pair: Vec<f32> = (0..4)
            .map(|i| {
                let one = |t: &Tensor| t.narrow(0, i, 1).expect("narrow");
                let mi = m.map(one);
                pairwise_loss(&one(&rc), &one(&rr), mi.as_ref(), coef)
                    .and_then(|l| Ok(l.to_scalar::<f32>()?))
                    .expect("loss")
            })
            .collect();
        assert_close(&per_pair, &floats(&case["per_pair_losses"]), 1e-4, name);
        let metrics = batch_metrics(&rc.to_vec1().expect("c"), &rr.to_vec1().expect("r"));
        for (k, v) in case["metrics"].as_object().cloned().unwrap_or_default() {
            let want = v.as_f64().unwrap_or(f64::NAN) as f32;
            assert_close(&[metrics[&k] as f32], &[want], 1e-4, &format!("{name} {k}"));
        }
    }
}
