//! DPO against TRL 1.16 goldens (`fixtures/goldens/dpo.json`, made by
//! `scripts/make_pref_goldens.py`):
//!
//! ```text
//! trl 1.16.0: DPOTrainer(model=tiny-llama, ref_model=tiny-llama-ref, args=DPOConfig(...));
//! batch = trainer.data_collator([{prompt_ids, chosen_ids, rejected_ids}, ...]);
//! loss = trainer._compute_loss(trainer.model, batch, return_outputs=False);
//! metrics = trainer._metrics['eval'][key][-1]; per-pair loss = same call on a batch of 1 pair
//! ```
//! Policy and reference differ (tiny-llama-ref is a perturbed copy), so no loss is ln 2.
use candle_core::{Device, Tensor};
use data::prefs::PrefTokens;
use dpo::batch::{halves, sequence_logps, PairBatch};
use dpo::loss::{metrics, pair_losses, PairLogps};
use dpo::{DpoConfig, DpoStage, LossType, PairSet};
use serde_json::Value;
use std::path::PathBuf;

type R = Result<(), Box<dyn std::error::Error>>;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn goldens() -> Value {
    let text = std::fs::read_to_string(fixtures().join("goldens/dpo.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: got {got}, want {want}"
    );
}

fn pairs(g: &Value) -> Vec<PrefTokens> {
    let rows = g["pairs"].as_array().cloned().unwrap_or_default();
    rows.iter()
        .enumerate()
        .map(|(i, p)| PrefTokens {
            index: i,
            line: i + 1,
            prompt: ids(&p["prompt_ids"]),
            chosen: ids(&p["chosen_ids"]),
            rejected: ids(&p["rejected_ids"]),
        })
        .collect()
}

/// The config a golden loss entry was made with (`loss_type`, `beta`, `label_smoothing`, and
/// for `rpo` TRL 1.16's `loss_type=["sigmoid","sft"], loss_weights=[1, rpo_alpha]`).
fn config_of(entry: &Value) -> DpoConfig {
    let loss = match entry["loss_type"].as_str().unwrap_or_default() {
        "ipo" => LossType::Ipo,
        "hinge" => LossType::Hinge,
        "robust" => LossType::Robust,
        "simpo" => LossType::Simpo,
        _ => LossType::Sigmoid,
    };
    DpoConfig {
        loss,
        beta: f(&entry["beta"]),
        label_smoothing: entry["label_smoothing"].as_f64().unwrap_or(0.0),
        gamma: entry["simpo_gamma"].as_f64().unwrap_or(0.5),
        rpo_alpha: entry["rpo_alpha"].as_f64().unwrap_or(0.0),
        ..Default::default()
    }
}

fn golden_logps(g: &Value, which: &[usize]) -> Result<PairLogps, candle_core::Error> {
    let dev = Device::Cpu;
    let col = |k: &str| -> Result<Tensor, candle_core::Error> {
        let v: Vec<f32> = which.iter().map(|&i| f(&g["pairs"][i][k]) as f32).collect();
        Tensor::from_vec(v, which.len(), &dev)
    };
    Ok(PairLogps {
        policy_chosen: col("policy_chosen_logps")?,
        policy_rejected: col("policy_rejected_logps")?,
        ref_chosen: col("ref_chosen_logps")?,
        ref_rejected: col("ref_rejected_logps")?,
        n_chosen: col("n_chosen")?,
        n_rejected: col("n_rejected")?,
        labels: Tensor::ones(which.len(), candle_core::DType::F32, &dev)?,
    })
}

#[test]
fn every_loss_matches_trl_from_the_golden_logps() -> R {
    let g = goldens();
    let entries = g["losses"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 15);
    for e in &entries {
        let name = e["name"].as_str().unwrap_or_default();
        let cfg = config_of(e);
        // per_pair_losses: each pair alone (batch of 1), RPO's NLL then being that pair's own.
        for (i, want) in e["per_pair_losses"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let lp = golden_logps(&g, &[i])?;
            let mut got = f64::from(pair_losses(&cfg, &lp)?.to_vec1::<f32>()?[0]);
            got += cfg.rpo_alpha * f64::from(dpo::loss::chosen_nll(&lp)?.to_scalar::<f32>()?);
            close(got, f(want), 1e-5, &format!("{name} pair {i}"));
        }
        let lp = golden_logps(&g, &[0, 1, 2, 3])?;
        let mut loss = f64::from(pair_losses(&cfg, &lp)?.mean_all()?.to_scalar::<f32>()?);
        loss += cfg.rpo_alpha * f64::from(dpo::loss::chosen_nll(&lp)?.to_scalar::<f32>()?);
        close(loss, f(&e["loss"]), 1e-5, &format!("{name} loss"));
        let m = metrics(&cfg, &lp)?;
        for (k, want) in e["metrics"].as_object().into_iter().flatten() {
            close(m[k.as_str()], f(want), 1e-5, &format!("{name} {k}"));
        }
    }
    Ok(())
}

fn load(name: &str) -> Result<lm::Pretrained, lm::Error> {
    lm::load(
        fixtures().join(name).to_str().unwrap_or_default(),
        &lm::LoadOptions::default(),
    )
}

#[test]
fn sequence_logps_match_trl_per_token_and_summed() -> R {
    let g = goldens();
    let ps = pairs(&g);
    let refs: Vec<&PrefTokens> = ps.iter().collect();
    let batch = PairBatch::new(&refs, &[0, 1, 2, 3], &[1.0; 4], None, 0);
    for (model, who) in [("tiny-llama", "policy"), ("tiny-llama-ref", "ref")] {
        let m = load(model)?.model;
        let (sums, tokens) = sequence_logps(&m, &batch)?;
        let (c, r) = halves(&sums)?;
        let (c, r) = (c.to_vec1::<f32>()?, r.to_vec1::<f32>()?);
        let tokens = tokens.to_vec1::<f32>()?;
        let mut at = 0;
        // Targets come row by row: chosen_0..chosen_3, then rejected_0..rejected_3.
        for side in ["chosen", "rejected"] {
            for (i, p) in g["pairs"].as_array().into_iter().flatten().enumerate() {
                let got = if side == "chosen" { c[i] } else { r[i] };
                close(
                    f64::from(got),
                    f(&p[format!("{who}_{side}_logps")]),
                    2e-5,
                    &format!("{who} {side} {i}"),
                );
                for (k, want) in p[format!("{who}_{side}_token_logps")]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    close(
                        f64::from(tokens[at + k]),
                        f(want),
                        2e-4,
                        &format!("{who} {side} {i} token {k}"),
                    );
                }
                at += p[format!("n_{side}")].as_u64().unwrap_or(0) as usize;
            }
        }
        assert_eq!(at, tokens.len());
    }
    Ok(())
}

fn stage(reference: Option<lm::CausalLm>, cfg: DpoConfig) -> Result<DpoStage, lm::Error> {
    let g = goldens();
    Ok(DpoStage {
        model: load("tiny-llama")?.model,
        reference,
        train: PairSet {
            pairs: pairs(&g),
            labels: vec![1.0; 4],
            ref_logps: None,
        },
        eval: PairSet::default(),
        cfg,
        pad_id: 0,
        eval_batch_size: 4,
    })
}

#[test]
fn end_to_end_losses_from_the_models_match_trl_live_and_precomputed() -> R {
    let g = goldens();
    let reference = load("tiny-llama-ref")?.model;
    for e in g["losses"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default();
        let cfg = config_of(e);
        let mut st = stage(Some(reference.clone()), cfg)?;
        let batch = st.train.batch(&[0, 1, 2, 3], 0);
        let live = f64::from(st.forward(&batch)?.loss.to_scalar::<f32>()?);
        close(live, f(&e["loss"]), 1e-4, &format!("{name} live"));
        // --precompute-ref: the same losses, from stored sums, with the reference freed.
        st.precompute_reference()?;
        assert!(st.reference.is_none() && st.train.ref_logps.is_some());
        let pre = f64::from(
            st.forward(&st.train.batch(&[0, 1, 2, 3], 0))?
                .loss
                .to_scalar::<f32>()?,
        );
        close(pre, live, 1e-6, &format!("{name} precomputed vs live"));
    }
    Ok(())
}

#[test]
fn logps_do_not_depend_on_padding_or_batch_mates() -> R {
    let g = goldens();
    let ps = pairs(&g);
    let m = load("tiny-llama")?.model;
    let alone: Vec<Vec<f32>> = (0..4)
        .map(|i| -> Result<Vec<f32>, candle_core::Error> {
            sequence_logps(&m, &PairBatch::new(&[&ps[i]], &[i], &[1.0], None, 0))?
                .0
                .to_vec1::<f32>()
        })
        .collect::<Result<_, _>>()?;
    // A longer batch mate pads every row further (pair 2 has the longest prompt).
    for order in [[2usize, 0, 1, 3], [3, 1, 0, 2]] {
        let refs: Vec<&PrefTokens> = order.iter().map(|&i| &ps[i]).collect();
        let both = sequence_logps(&m, &PairBatch::new(&refs, &order, &[1.0; 4], None, 0))?
            .0
            .to_vec1::<f32>()?;
        for (k, &i) in order.iter().enumerate() {
            close(
                f64::from(both[k]),
                f64::from(alone[i][0]),
                1e-5,
                &format!("chosen {i}"),
            );
            close(
                f64::from(both[4 + k]),
                f64::from(alone[i][1]),
                1e-5,
                &format!("rejected {i}"),
            );
        }
    }
    Ok(())
}
