//! TRL 1.16's `KTOTrainer` loss and metrics from per-sequence log-prob sums.
//!
//! With r = policy − reference completion log-prob sum and z the batch's KL estimate
//! `max(0, mean_i (π(y'_i|x_i) − ρ(y'_i|x_i)))` over the mismatched pairs (detached):
//!
//! - `kto`: desirable `1 − σ(β (r − z))`, undesirable `1 − σ(β (z − r))`;
//! - `apo_zero_unpaired`: desirable `1 − σ(β r)`, undesirable `σ(β r) = 1 − σ(−β r)` (z = 0).
//!
//! Each row's loss is weighted by `desirable_weight` or `undesirable_weight` and the batch loss
//! is the mean over rows (TRL's `losses.nanmean()`). Metrics are named as TRL logs them:
//! `kl`, `rewards/chosen`, `rewards/rejected`, `rewards/margins`, `logps/chosen`,
//! `logps/rejected` (rewards β r, means over the desirable or undesirable rows of the batch; a
//! side with no row in the batch is not logged, and margins only with both).
use crate::config::{KtoConfig, KtoLoss};
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;
use train::loss::log_sigmoid;

/// Per-row inputs `(B,)` f32, and the mismatched rows' sums when the loss reads the KL estimate.
#[derive(Debug, Clone)]
pub struct KtoLogps {
    pub policy: Tensor,
    pub reference: Tensor,
    /// `(policy, reference)` sums of the mismatched pairs.
    pub kl: Option<(Tensor, Tensor)>,
    /// Desirable (`true`) or undesirable, per row.
    pub labels: Vec<bool>,
}

/// The KL estimate z: the mean mismatched log-ratio, clamped at 0, detached; 0 without rows.
pub fn kl_estimate(lp: &KtoLogps) -> candle_core::Result<f64> {
    match &lp.kl {
        Some((p, r)) if p.dim(0)? > 0 => {
            let mean = (p - r)?.detach().mean_all()?.to_scalar::<f32>()?;
            Ok(f64::from(mean).max(0.0))
        }
        _ => Ok(0.0),
    }
}

/// The batch loss `()`, the weighted loss of each row `(B,)` and the KL estimate used.
pub fn kto_loss(cfg: &KtoConfig, lp: &KtoLogps) -> candle_core::Result<(Tensor, Tensor, f64)> {
    let dev = lp.policy.device();
    let z = match cfg.loss {
        KtoLoss::Kto => kl_estimate(lp)?,
        KtoLoss::ApoZeroUnpaired => 0.0,
    };
    let b = lp.labels.len();
    let sign: Vec<f32> = lp
        .labels
        .iter()
        .map(|&l| if l { 1.0 } else { -1.0 })
        .collect();
    let weight: Vec<f32> = (lp.labels.iter())
        .map(|&l| {
            if l {
                cfg.desirable_weight
            } else {
                cfg.undesirable_weight
            }
        })
        .map(|w| w as f32)
        .collect();
    let sign = Tensor::from_slice(&sign, b, dev)?;
    let weight = Tensor::from_slice(&weight, b, dev)?;
    // x = β s (r − z): σ(x) is the desirable row's σ(β(r − z)) and the undesirable row's σ(β(z − r)).
    let ratio = ((&lp.policy - &lp.reference)? - z)?;
    let x = ((ratio * sign)? * cfg.beta)?;
    let per_row = ((log_sigmoid(&x)?.exp()?.neg()? + 1.0)? * weight)?;
    let loss = per_row.mean_all()?;
    Ok((loss, per_row, z))
}

/// TRL's metric values for one batch, the KL estimate `z` included.
pub fn metrics(
    cfg: &KtoConfig,
    lp: &KtoLogps,
    z: f64,
) -> candle_core::Result<BTreeMap<String, f64>> {
    let host = |t: &Tensor| -> candle_core::Result<Vec<f64>> {
        t.detach().to_dtype(DType::F64)?.to_vec1::<f64>()
    };
    let (pol, rf) = (host(&lp.policy)?, host(&lp.reference)?);
    let mut m = BTreeMap::new();
    m.insert("kl".to_string(), z);
    let mut side = |label: bool, name: &str| -> Option<f64> {
        let idx: Vec<usize> = (0..pol.len()).filter(|&i| lp.labels[i] == label).collect();
        if idx.is_empty() {
            return None;
        }
        let n = idx.len() as f64;
        let reward = idx
            .iter()
            .map(|&i| cfg.beta * (pol[i] - rf[i]))
            .sum::<f64>()
            / n;
        let logps = idx.iter().map(|&i| pol[i]).sum::<f64>() / n;
        m.insert(format!("rewards/{name}"), reward);
        m.insert(format!("logps/{name}"), logps);
        Some(reward)
    };
    let chosen = side(true, "chosen");
    let rejected = side(false, "rejected");
    if let (Some(c), Some(r)) = (chosen, rejected) {
        m.insert("rewards/margins".into(), c - r);
    }
    Ok(m)
}
