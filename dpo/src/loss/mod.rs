//! The preference losses and TRL's metrics, from per-sequence log-prob sums.
//!
//! With `d = (π_c - ρ_c) - (π_r - ρ_r)` (summed completion log-probs of policy π and reference ρ):
//! sigmoid `-(1-ls) logσ(βd) - ls logσ(-βd)`; robust `(-(1-ls) logσ(βd) + ls logσ(-βd)) / (1-2ls)`;
//! hinge `relu(1 - βd)`; ipo `((π_c-ρ_c)/n_c - (π_r-ρ_r)/n_r - 1/(2β))²`; simpo
//! `-(1-ls) logσ(β(m_c - m_r) - γ) - ls logσ(-(β(m_c - m_r) - γ))` with mean log-probs `m`.
//! A soft label `p` (ties) gives `p L(z) + (1-p) L(-z)`: the expected loss when the preference
//! is drawn with probability `p`, where `-z` is the same pair read the other way round.
use crate::config::{DpoConfig, LossType};
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;
use train::loss::log_sigmoid;

/// Per-pair inputs, each `(B,)` f32. `ref_*` are ignored by SimPO (may be zeros).
#[derive(Debug, Clone)]
pub struct PairLogps {
    pub policy_chosen: Tensor,
    pub policy_rejected: Tensor,
    pub ref_chosen: Tensor,
    pub ref_rejected: Tensor,
    /// Completion token counts.
    pub n_chosen: Tensor,
    pub n_rejected: Tensor,
    /// Probability that chosen is preferred (1, or 0.5 for a soft tie).
    pub labels: Tensor,
}

/// The signed quantity `z` each loss is a function of (flipping chosen and rejected negates it).
fn signed(cfg: &DpoConfig, lp: &PairLogps) -> candle_core::Result<Tensor> {
    let beta = cfg.beta;
    let chosen_ratio = (&lp.policy_chosen - &lp.ref_chosen)?;
    let rejected_ratio = (&lp.policy_rejected - &lp.ref_rejected)?;
    match cfg.loss {
        LossType::Sigmoid | LossType::Robust | LossType::Hinge => {
            (chosen_ratio - rejected_ratio)? * beta
        }
        LossType::Ipo => (chosen_ratio / &lp.n_chosen)? - (rejected_ratio / &lp.n_rejected)?,
        LossType::Simpo => {
            let diff =
                ((&lp.policy_chosen / &lp.n_chosen)? - (&lp.policy_rejected / &lp.n_rejected)?)?;
            diff * beta
        }
    }
}

/// The loss of each pair as a function of `z` (label 1).
fn one_sided(cfg: &DpoConfig, z: &Tensor) -> candle_core::Result<Tensor> {
    let ls = cfg.label_smoothing;
    match cfg.loss {
        LossType::Sigmoid => (log_sigmoid(z)? * -(1.0 - ls))? - (log_sigmoid(&z.neg()?)? * ls)?,
        LossType::Robust => {
            let l = ((log_sigmoid(z)? * -(1.0 - ls))? + (log_sigmoid(&z.neg()?)? * ls)?)?;
            l / (1.0 - 2.0 * ls)
        }
        LossType::Hinge => z.neg()?.affine(1.0, 1.0)?.relu(),
        LossType::Ipo => z.affine(1.0, -1.0 / (2.0 * cfg.beta))?.sqr(),
        LossType::Simpo => {
            let x = z.affine(1.0, -cfg.gamma)?;
            (log_sigmoid(&x)? * -(1.0 - ls))? - (log_sigmoid(&x.neg()?)? * ls)?
        }
    }
}

/// Per-pair losses `(B,)`, soft labels included.
pub fn pair_losses(cfg: &DpoConfig, lp: &PairLogps) -> candle_core::Result<Tensor> {
    let z = signed(cfg, lp)?;
    let forward = one_sided(cfg, &z)?;
    let backward = one_sided(cfg, &z.neg()?)?;
    let p = &lp.labels;
    (forward * p)? + (backward * p.affine(-1.0, 1.0)?)?
}

/// TRL's metric values for one batch (means over pairs) plus `kl`, and the sums they came from.
pub fn metrics(cfg: &DpoConfig, lp: &PairLogps) -> candle_core::Result<BTreeMap<String, f64>> {
    let host = |t: &Tensor| -> candle_core::Result<Vec<f64>> {
        t.detach().to_dtype(DType::F64)?.to_vec1::<f64>()
    };
    let (pc, pr) = (host(&lp.policy_chosen)?, host(&lp.policy_rejected)?);
    let (rc, rr) = (host(&lp.ref_chosen)?, host(&lp.ref_rejected)?);
    let (nc, nr) = (host(&lp.n_chosen)?, host(&lp.n_rejected)?);
    let b = pc.len().max(1) as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / b;
    // SimPO (TRL's CPOTrainer): rewards and logps are the length-normalised policy log-probs.
    let (xc, xr): (Vec<f64>, Vec<f64>) = if cfg.loss == LossType::Simpo {
        (0..pc.len())
            .map(|i| (pc[i] / nc[i], pr[i] / nr[i]))
            .unzip()
    } else {
        (0..pc.len())
            .map(|i| (pc[i] - rc[i], pr[i] - rr[i]))
            .unzip()
    };
    let rew_c: Vec<f64> = xc.iter().map(|x| cfg.beta * x).collect();
    let rew_r: Vec<f64> = xr.iter().map(|x| cfg.beta * x).collect();
    let acc: Vec<f64> = (0..pc.len())
        .map(|i| f64::from(u8::from(rew_c[i] > rew_r[i])))
        .collect();
    let margins: Vec<f64> = (0..pc.len()).map(|i| rew_c[i] - rew_r[i]).collect();
    let mut m = BTreeMap::new();
    m.insert("rewards/chosen".into(), mean(&rew_c));
    m.insert("rewards/rejected".into(), mean(&rew_r));
    m.insert("rewards/accuracies".into(), mean(&acc));
    m.insert("rewards/margins".into(), mean(&margins));
    let (lc, lr) = if cfg.loss == LossType::Simpo {
        (&xc, &xr)
    } else {
        (&pc, &pr)
    };
    m.insert("logps/chosen".into(), mean(lc));
    m.insert("logps/rejected".into(), mean(lr));
    if cfg.uses_reference() {
        // k1 estimate of KL(π || ρ) per token on the dataset's completions (not policy samples,
        // so a drift indicator rather than the true KL): Σ(log π - log ρ) / tokens.
        let tokens: f64 = nc.iter().chain(&nr).sum();
        let ratio: f64 = xc.iter().chain(&xr).sum();
        m.insert("kl".into(), if tokens > 0.0 { ratio / tokens } else { 0.0 });
    }
    Ok(m)
}

/// The RPO term: mean NLL over every chosen completion token of the batch (token-weighted,
/// TRL 1.16's `"sft"` loss), from the chosen sums and counts.
pub fn chosen_nll(lp: &PairLogps) -> candle_core::Result<Tensor> {
    let tokens = lp.n_chosen.sum_all()?;
    lp.policy_chosen
        .sum_all()?
        .neg()?
        .broadcast_div(&tokens.clamp(1.0, f64::MAX)?)
}
