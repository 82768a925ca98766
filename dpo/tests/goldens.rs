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
use dpo::loss::{batch_loss, metrics, PairLogps};
use dpo::{DpoConfig, DpoStage, PairSet};
use serde_json::{json, Value};
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

/// The config a golden loss entry was made with (`loss_type`: one name or TRL's list, with
/// `loss_weights`; `beta`, `label_smoothing`, `simpo_gamma`, `discopop_tau`; for `rpo` TRL 1.16's
/// `loss_type=["sigmoid","sft"], loss_weights=[1, rpo_alpha]` as Rudder's `rpo_alpha`). Read
/// through the TOML keys' serde, as a settings file would be.
fn config_of(entry: &Value) -> Result<DpoConfig, serde_json::Error> {
    let loss = match &entry["loss_type"] {
        Value::String(s) if s == "rpo" => json!("sigmoid"),
        v => v.clone(),
    };
    let or = |k: &str, d: Value| match &entry[k] {
        Value::Null => d,
        v => v.clone(),
    };
    serde_json::from_value(json!({
        "loss": loss,
        "loss_weights": or("loss_weights", json!([])),
        "beta": entry["beta"],
        "label_smoothing": or("label_smoothing", json!(0.0)),
        "gamma": or("simpo_gamma", json!(0.5)),
        "discopop_tau": or("discopop_tau", json!(0.05)),
        "rpo_alpha": or("rpo_alpha", json!(0.0)),
    }))
}

/// The log-probs of `which` pairs: `g["pairs"]`'s, the reference's replaced by the entry's own
/// `ref_chosen_logps` / `ref_rejected_logps` where it fixed them (TRL's precomputed-reference
/// input).
fn golden_logps(g: &Value, e: &Value, which: &[usize]) -> Result<PairLogps, candle_core::Error> {
    let dev = Device::Cpu;
    let col = |k: &str| -> Result<Tensor, candle_core::Error> {
        let v: Vec<f32> = which
            .iter()
            .map(|&i| match &e[k] {
                Value::Array(fixed) => f(&fixed[i]) as f32,
                _ => f(&g["pairs"][i][k]) as f32,
            })
            .collect();
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

/// Each entry's per-pair losses (each pair alone: a batch of 1, the NLL then that pair's own),
/// batch loss and TRL metrics, from the golden log-probs, to 1e-5.
fn check_losses(g: &Value, entries: &[Value]) -> R {
    for e in entries {
        let name = e["name"].as_str().unwrap_or_default();
        let cfg = config_of(e)?;
        let per_pair = e["per_pair_losses"].as_array().cloned().unwrap_or_default();
        assert_eq!(per_pair.len(), 4, "{name}");
        for (i, want) in per_pair.iter().enumerate() {
            let got = batch_loss(&cfg, &golden_logps(g, e, &[i])?)?.0;
            let got = f64::from(got.to_scalar::<f32>()?);
            close(got, f(want), 1e-5, &format!("{name} pair {i}"));
        }
        let lp = golden_logps(g, e, &[0, 1, 2, 3])?;
        let loss = f64::from(batch_loss(&cfg, &lp)?.0.to_scalar::<f32>()?);
        close(loss, f(&e["loss"]), 1e-5, &format!("{name} loss"));
        let m = metrics(&cfg, &lp)?;
        for (k, want) in e["metrics"].as_object().into_iter().flatten() {
            close(m[k.as_str()], f(want), 1e-5, &format!("{name} {k}"));
        }
    }
    Ok(())
}

#[test]
fn every_loss_matches_trl_from_the_golden_logps() -> R {
    let g = goldens();
    let entries = g["losses"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 15);
    check_losses(&g, &entries)
}

fn loss_goldens() -> Value {
    let text =
        std::fs::read_to_string(fixtures().join("goldens/dpo_losses.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The other loss types of TRL 1.16's DPOTrainer and weighted sums of several
/// (`fixtures/goldens/dpo_losses.json`, `scripts/make_pref_goldens.py --only dpo_losses`): the
/// same four pairs, the same trainer call as above with `loss_type=[...]`, `loss_weights=[...]`
/// (MPO: `["sigmoid","bco_pair","sft"]`, `[0.8,0.2,1.0]`); aot and aot_unpaired also with fixed
/// reference log-probs (`trainer.precompute_ref_logps = True`, values in the batch) that rank
/// the pairs differently from the policy's, so the batch sort matters. From TRL 1.16's
/// `DPOTrainer._compute_loss`, `s = chosen_logratios`, `r = rejected_logratios`, `Δ = s - r`:
///
/// ```text
/// exo_pair:     qw*(logσ(βΔ) - log1p(-ε)) + ql*(logσ(-βΔ) - log ε), qw = σ(βΔ), ql = σ(-βΔ), ε = label_smoothing
/// nca_pair:     -logσ(βs) - 0.5*logσ(-βs) - 0.5*logσ(-βr)
/// bco_pair:     -logσ(βs) - logσ(-βr)
/// sppo_hard:    (s - 0.5/β)**2 + (r + 0.5/β)**2
/// aot:          δ = sort(chosen_logps - rejected_logps) - sort(ref_chosen_logps - ref_rejected_logps);
///               -logσ(βδ)*(1-ls) - logσ(-βδ)*ls
/// aot_unpaired: δ = sort(s) - sort(r); the same
/// apo_zero:     1 - σ(βs) + σ(βr)
/// apo_down:     σ(βs) + 1 - σ(β(s - r))
/// discopop:     x = βΔ; m = σ(x/discopop_tau); -logσ(x)*(1-m) + exp(-x)*m
/// sft:          -chosen_per_token_logps[chosen_mask].mean()          (the whole batch's tokens)
/// sigmoid_norm: -logσ(β(s/n_chosen - r/n_rejected))
/// loss = Σ_k loss_weights[k] * per_sequence_loss_k.mean()
/// ```
#[test]
fn the_other_trl_losses_and_weighted_sums_match_trl() -> R {
    let g = loss_goldens();
    let entries = g["losses"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 31);
    let mut seen = std::collections::BTreeSet::new();
    for e in &entries {
        for l in e["loss_type"].as_array().into_iter().flatten() {
            seen.insert(l.as_str().unwrap_or_default().to_string());
        }
    }
    for l in [
        "exo_pair",
        "nca_pair",
        "bco_pair",
        "sppo_hard",
        "aot",
        "aot_unpaired",
        "apo_zero",
        "apo_down",
        "discopop",
        "sft",
        "sigmoid_norm",
    ] {
        assert!(seen.contains(l), "{l} has no golden");
    }
    check_losses(&g, &entries)
}

/// Soft labels: sigmoid's is `p L(βd) + (1-p) L(-βd)` as before the loss list; for every loss
/// type label 0 is the swapped pair with label 1, and label ½ reads the same either way round
/// (for aot: the whole batch swapped).
#[test]
fn soft_labels_read_each_pair_both_ways_for_every_loss() -> R {
    use clap::ValueEnum;
    let g = loss_goldens();
    let lp = golden_logps(&g, &Value::Null, &[0, 1, 2, 3])?;
    let with = |lp: &PairLogps, p: f32| -> Result<PairLogps, candle_core::Error> {
        let labels = Tensor::new(&[p; 4], &Device::Cpu)?;
        Ok(PairLogps {
            labels,
            ..lp.clone()
        })
    };
    // sigmoid (cDPO, ls 0.1) by hand: p L(βd) + (1-p) L(-βd).
    let cdpo = |x: f64| -> f64 {
        let log_sig = |x: f64| -(1.0 + (-x).exp()).ln();
        -(0.9 * log_sig(x)) - 0.1 * log_sig(-x)
    };
    let cfg = DpoConfig {
        label_smoothing: 0.1,
        ..Default::default()
    };
    let got = dpo::loss::pair_losses(&cfg, &with(&lp, 0.3)?)?.to_vec1::<f32>()?;
    for (i, got) in got.iter().enumerate() {
        let p = &g["pairs"][i];
        let d = (f(&p["policy_chosen_logps"]) - f(&p["ref_chosen_logps"]))
            - (f(&p["policy_rejected_logps"]) - f(&p["ref_rejected_logps"]));
        let want = 0.3 * cdpo(0.1 * d) + 0.7 * cdpo(-0.1 * d);
        close(f64::from(*got), want, 1e-5, &format!("soft sigmoid {i}"));
    }
    for &kind in dpo::LossType::value_variants() {
        let cfg = DpoConfig {
            loss: vec![kind],
            label_smoothing: if kind.uses_label_smoothing() {
                0.1
            } else {
                0.0
            },
            ..Default::default()
        };
        let v = |lp: &PairLogps| -> Result<Vec<f32>, candle_core::Error> {
            dpo::loss::pair_losses(&cfg, lp)?.to_vec1::<f32>()
        };
        let pairs = [
            (v(&with(&lp, 0.0)?)?, v(&with(&lp.swapped(), 1.0)?)?),
            (v(&with(&lp, 0.5)?)?, v(&with(&lp.swapped(), 0.5)?)?),
        ];
        for (a, b) in pairs {
            for (x, y) in a.iter().zip(&b) {
                close(f64::from(*x), f64::from(*y), 1e-5, kind.name());
            }
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
    let more = loss_goldens();
    let entries = g["losses"].as_array().into_iter().flatten();
    let more = more["losses"].as_array().into_iter().flatten();
    // Entries with fixed reference log-probs have no model run to compare with.
    for e in entries.chain(more.filter(|e| e["ref_chosen_logps"].is_null())) {
        let name = e["name"].as_str().unwrap_or_default();
        let cfg = config_of(e)?;
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
