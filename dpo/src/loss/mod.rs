//! The preference losses and TRL's metrics, from per-sequence log-prob sums.
//!
//! Each `--loss` is a function of one batch's [`PairLogps`] in [`kinds`] (its formula there). The
//! batch loss is `Σ_k w_k · mean_i L_k(pair i) + (w_sft + rpo_alpha) · NLL(chosen)` (TRL 1.16's
//! `loss_type` / `loss_weights`). A soft label `p` (ties) gives `p L(pairs) + (1-p) L(swapped)`:
//! the expected loss when the preference is drawn with probability `p`, the swapped batch being
//! every pair read the other way round (for aot the sort is over the swapped batch).
pub mod kinds;

use crate::config::{DpoConfig, LossType};
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;

/// Per-pair inputs, each `(B,)` f32. `ref_*` are ignored by SimPO and sft (may be zeros).
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

impl PairLogps {
    /// `(π_c - ρ_c, π_r - ρ_r)`, each `(B,)`.
    pub fn log_ratios(&self) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((
            (&self.policy_chosen - &self.ref_chosen)?,
            (&self.policy_rejected - &self.ref_rejected)?,
        ))
    }

    /// Every pair read the other way round (labels unchanged).
    pub fn swapped(&self) -> PairLogps {
        PairLogps {
            policy_chosen: self.policy_rejected.clone(),
            policy_rejected: self.policy_chosen.clone(),
            ref_chosen: self.ref_rejected.clone(),
            ref_rejected: self.ref_chosen.clone(),
            n_chosen: self.n_rejected.clone(),
            n_rejected: self.n_chosen.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// The weighted sum of the pair losses (every `--loss` but `sft`) of each pair `(B,)`, soft
/// labels included.
pub fn pair_losses(cfg: &DpoConfig, lp: &PairLogps) -> candle_core::Result<Tensor> {
    let p = &lp.labels;
    let soft = p
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?
        .iter()
        .any(|&x| x != 1.0);
    // Only computed for soft labels: a swapped loss can overflow (discopop's exp), and 0 · inf is NaN.
    let swapped = soft.then(|| lp.swapped());
    let mut total = lp.policy_chosen.zeros_like()?;
    for (kind, w) in cfg.weighted_losses().filter(|(k, _)| *k != LossType::Sft) {
        let mut l = kinds::pair_loss(kind, cfg, lp)?;
        if let Some(s) = &swapped {
            let back = kinds::pair_loss(kind, cfg, s)?;
            l = ((l * p)? + (back * p.affine(-1.0, 1.0)?)?)?;
        }
        total = (total + (l * w)?)?;
    }
    Ok(total)
}

/// The batch loss `()`: the mean of [`pair_losses`] plus the chosen NLL times
/// [`DpoConfig::nll_weight`] (`sft` and `rpo_alpha`), and that NLL when it is used.
pub fn batch_loss(
    cfg: &DpoConfig,
    lp: &PairLogps,
) -> candle_core::Result<(Tensor, Tensor, Option<Tensor>)> {
    let per_pair = pair_losses(cfg, lp)?;
    let mut loss = per_pair.mean_all()?;
    let w = cfg.nll_weight();
    let mut nll = None;
    if w > 0.0 {
        let n = chosen_nll(lp)?;
        loss = (loss + (&n * w)?)?;
        nll = Some(n);
    }
    Ok((loss, per_pair, nll))
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
    // Reference-free (SimPO, as TRL's CPOTrainer; sft alone): rewards and logps are the
    // length-normalised policy log-probs.
    let free = !cfg.uses_reference();
    let (xc, xr): (Vec<f64>, Vec<f64>) = if free {
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
    let (lc, lr) = if free { (&xc, &xr) } else { (&pc, &pr) };
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
