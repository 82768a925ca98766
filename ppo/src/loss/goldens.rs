//! TRL 1.16's GRPO loss types against `fixtures/goldens/grpo.json`, made by
//! `scripts/make_grpo_goldens.py`, whose core is (TRL's own code on fixed log-probs):
//!
//! ```python
//! t = object.__new__(GRPOTrainer)            # only the attributes _compute_loss reads
//! t.loss_type, t.importance_sampling_level, t.beta = loss_type, level, beta
//! t.epsilon_low, t.epsilon_high = epsilon, epsilon_high or epsilon
//! t.max_completion_length = 6; t.current_gradient_accumulation_steps = 1  # + a one-process accelerator
//! logp = LOGP.clone().requires_grad_(True)
//! t._get_per_token_logps_and_entropies = lambda *a, **k: (logp, torch.zeros_like(LOGP), None)
//! loss = t._compute_loss(None, {"completion_mask": MASK, "advantages": ADV, "old_per_token_logps": OLD,
//!                               "ref_per_token_logps": REF, "num_items_in_batch": MASK.sum(), ...})
//! loss.backward()   # -> "loss", "grad_logp" (d loss / d logp at every completion token), "metrics"
//! ```
//!
//! Four completions of lengths 4, 2, 3, 1; cases: grpo (token and sequence level, with and
//! without epsilon_high and β), bnpo, dr_grpo, dapo (token and sequence), cispo (cap 5 and 1.2).
use super::*;
use crate::config::{ImportanceSamplingLevel, LossType};
use candle_core::{Device, Var};
use serde_json::Value;

pub(crate) fn golden() -> Value {
    serde_json::from_str(include_str!("../../../fixtures/goldens/grpo.json")).unwrap_or_default()
}

fn flat(v: &Value) -> Vec<f32> {
    let rows = v.as_array().cloned().unwrap_or_default();
    rows.iter()
        .flat_map(|r| r.as_array().cloned().unwrap_or_default())
        .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
        .collect()
}

fn tensor(v: Vec<f32>) -> Tensor {
    let n = v.len();
    Tensor::from_vec(v, n, &Device::Cpu).unwrap()
}

/// One case: the settings as Rudder reads them, then loss, gradient and metrics.
fn check_case(inputs: &Value, case: &Value) -> Result<()> {
    let lens: Vec<usize> = serde_json::from_value(inputs["lens"].clone()).unwrap_or_default();
    let loss_type: LossType = serde_json::from_value(case["loss_type"].clone()).unwrap();
    let level: ImportanceSamplingLevel =
        serde_json::from_value(case["importance_sampling_level"].clone()).unwrap();
    let eps = case["epsilon"].as_f64().unwrap_or_default();
    let s = Surrogate {
        clip_low: eps,
        clip_high: case["epsilon_high"].as_f64().unwrap_or(eps),
        cispo: loss_type == LossType::Cispo,
        sequence: level == ImportanceSamplingLevel::Sequence,
    };
    let reduce = match loss_type {
        LossType::Grpo => Reduce::Sequences,
        LossType::DrGrpo => {
            Reduce::Constant(inputs["max_completion_length"].as_u64().unwrap_or(0) as usize)
        }
        _ => Reduce::Tokens,
    };
    let logp = Var::from_tensor(&tensor(flat(&inputs["logp"])))?;
    let old = tensor(flat(&inputs["old_logp"]));
    let refp = tensor(flat(&inputs["ref_logp"]));
    let adv: Vec<f32> = (inputs["advantages"].as_array().unwrap().iter())
        .zip(&lens)
        .flat_map(|(a, &l)| vec![a.as_f64().unwrap() as f32; l])
        .collect();
    let w = tensor(weights(&lens, reduce));
    let pg = policy_loss(logp.as_tensor(), &old, &tensor(adv), &w, &lens, &s)?;
    let beta = case["beta"].as_f64().unwrap_or_default();
    let loss = (&pg.loss + (weighted(&k3(logp.as_tensor(), &refp)?, &w)? * beta)?)?;
    let name = format!(
        "{} {} epsilon_high={} beta={}",
        case["loss_type"], case["importance_sampling_level"], case["epsilon_high"], case["beta"]
    );
    let got = f64::from(loss.to_scalar::<f32>()?);
    let want = case["loss"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-5, "{name}: loss {got} vs {want}");
    let grads = loss.backward()?;
    let grad: Vec<f32> = grads.get(logp.as_tensor()).unwrap().to_vec1()?;
    for (g, w) in grad.iter().zip(flat(&case["grad_logp"])) {
        assert!((g - w).abs() < 1e-5, "{name}: grad {grad:?}");
    }
    let m = &case["metrics"];
    let metrics = match s.cispo {
        true => vec![(pg.high_clipped, &m["cispo_clip_ratio"])],
        false => vec![
            (pg.low_clipped, &m["clip_ratio/low_mean"]),
            (pg.high_clipped, &m["clip_ratio/high_mean"]),
        ],
    };
    for (got, want) in metrics {
        assert!(
            (got - want.as_f64().unwrap()).abs() < 1e-6,
            "{name}: {got} vs {want}"
        );
    }
    Ok(())
}

#[test]
fn grpo_loss_types_match_trl() -> Result<()> {
    let g = golden();
    let cases = g["losses"].as_array().cloned().unwrap_or_default();
    assert_eq!(cases.len(), 11);
    for case in &cases {
        check_case(&g["inputs"], case)?;
    }
    Ok(())
}

/// dapo and bnpo are one formula on one micro-batch (TRL's dapo normalises by the tokens of
/// the whole accumulation window, which Rudder's micro-batch losses do not see).
#[test]
fn dapo_equals_bnpo_on_one_micro_batch() {
    let g = golden();
    let loss = |t: &str, b: f64| {
        let cases = g["losses"].as_array().cloned().unwrap_or_default();
        let hit = cases.into_iter().find(|c| {
            c["loss_type"] == t
                && c["beta"].as_f64() == Some(b)
                && c["importance_sampling_level"] == "token"
        });
        hit.and_then(|c| c["loss"].as_f64())
    };
    assert_eq!(loss("dapo", 0.04), loss("bnpo", 0.04));
}
