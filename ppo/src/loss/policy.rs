//! The policy term of the update on flat `(N,)` tensors: PPO's clipped surrogate with separate
//! lower and upper bounds (DAPO's clip-higher, TRL's `epsilon` / `epsilon_high`), CISPO's
//! truncated, detached ratio, and GSPO's one ratio per completion
//! (`importance_sampling_level="sequence"`), as TRL's `GRPOTrainer._compute_loss` forms them.
use super::{mean, weighted, weights, Reduce};
use candle_core::{DType, Result, Tensor};

/// Which surrogate, with which bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Surrogate {
    /// The ratio's floor is `1 − clip_low` (TRL's `epsilon`, Rudder's `cliprange`).
    pub clip_low: f64,
    /// The ratio's ceiling is `1 + clip_high` (TRL's `epsilon_high`); with `cispo`, the ratio's
    /// absolute cap.
    pub clip_high: f64,
    /// CISPO: `−sg(min(r, clip_high)) · A · log π` instead of the clipped surrogate.
    pub cispo: bool,
    /// GSPO: one ratio per completion, `exp(mean_t(log π − log π_old))`, on all its tokens.
    pub sequence: bool,
}

impl Surrogate {
    /// PPO's symmetric clip on token ratios.
    pub fn clipped(clip: f64) -> Self {
        Self {
            clip_low: clip,
            clip_high: clip,
            cispo: false,
            sequence: false,
        }
    }
}

/// The policy loss and what is logged about it.
pub struct PolicyTerms {
    /// Scalar, reduced with the weights.
    pub loss: Tensor,
    /// Share of tokens where the clipped term was the larger (`policy/clipfrac`; cispo: where
    /// the ratio was capped).
    pub clipfrac: f64,
    /// TRL's `clip_ratio/low_mean`: ratio below `1 − clip_low` where the advantage is negative.
    pub low_clipped: f64,
    /// TRL's `clip_ratio/high_mean` (`cispo_clip_ratio` for cispo): ratio above the ceiling
    /// where the advantage is positive.
    pub high_clipped: f64,
    /// `½ E[(logp − old_logp)²]` over tokens (TRL PPO's `approxkl`).
    pub approx_kl: f64,
}

/// The policy loss of completions of lengths `lens` (flat: `Σ lens` tokens), reduced with `w`.
pub fn policy_loss(
    logp: &Tensor,
    old_logp: &Tensor,
    adv: &Tensor,
    w: &Tensor,
    lens: &[usize],
    s: &Surrogate,
) -> Result<PolicyTerms> {
    let diff = (logp - old_logp)?;
    let log_ratio = match s.sequence {
        true => sequence_mean(&diff, lens)?,
        false => diff.clone(),
    };
    let ratio = log_ratio.exp()?;
    let neg_adv = adv.neg()?;
    let (per_token, clipfrac) = if s.cispo {
        let capped = ratio.detach().clamp(0.0, s.clip_high)?;
        (((&neg_adv * capped)? * logp)?, None)
    } else {
        let l1 = (&neg_adv * &ratio)?;
        let l2 = (&neg_adv * ratio.clamp(1.0 - s.clip_low, 1.0 + s.clip_high)?)?;
        let frac = mean(&l2.gt(&l1)?.to_dtype(DType::F32)?)?;
        (l1.maximum(&l2)?, Some(frac))
    };
    let loss = weighted(&per_token, w)?;
    let (low_clipped, high_clipped) = clip_ratios(&ratio, adv, lens, s)?;
    let approx_kl = 0.5 * mean(&diff.detach().sqr()?)?;
    Ok(PolicyTerms {
        loss,
        clipfrac: clipfrac.unwrap_or(high_clipped),
        low_clipped,
        high_clipped,
        approx_kl,
    })
}

/// PPO's clipped surrogate `max(−A r, −A clip(r, 1 ± ε))` on token ratios, reduced with `w`;
/// also the clip fraction and the approximate KL to the rollout policy.
pub fn clipped_policy_loss(
    logp: &Tensor,
    old_logp: &Tensor,
    adv: &Tensor,
    w: &Tensor,
    clip: f64,
) -> Result<(Tensor, f64, f64)> {
    let t = policy_loss(logp, old_logp, adv, w, &[], &Surrogate::clipped(clip))?;
    Ok((t.loss, t.clipfrac, t.approx_kl))
}

/// TRL's clip-ratio metrics: the share of tokens (of completions, with per-sequence ratios)
/// clipped below with `A < 0` and above with `A > 0`.
fn clip_ratios(ratio: &Tensor, adv: &Tensor, lens: &[usize], s: &Surrogate) -> Result<(f64, f64)> {
    let r: Vec<f32> = ratio.detach().to_dtype(DType::F32)?.to_vec1()?;
    let a: Vec<f32> = adv.to_dtype(DType::F32)?.to_vec1()?;
    let ceiling = if s.cispo {
        s.clip_high
    } else {
        1.0 + s.clip_high
    };
    let w = match s.sequence {
        true => weights(lens, Reduce::Sequences),
        false => vec![1.0 / r.len().max(1) as f32; r.len()],
    };
    let (mut low, mut high) = (0f64, 0f64);
    for ((&r, &a), &w) in r.iter().zip(&a).zip(&w) {
        let (r, w) = (f64::from(r), f64::from(w));
        if !s.cispo && r < 1.0 - s.clip_low && a < 0.0 {
            low += w;
        }
        if r > ceiling && a > 0.0 {
            high += w;
        }
    }
    Ok((low, high))
}

/// `(N,)` → `(N,)`: each completion's tokens replaced by their mean (differentiable).
pub(crate) fn sequence_mean(x: &Tensor, lens: &[usize]) -> Result<Tensor> {
    let n: usize = lens.iter().sum();
    let b = lens.len();
    let (mut avg, mut seg) = (vec![0f32; b * n], Vec::with_capacity(n));
    let mut at = 0;
    for (i, &l) in lens.iter().enumerate() {
        for j in at..at + l {
            avg[i * n + j] = 1.0 / l as f32;
            seg.push(i as u32);
        }
        at += l;
    }
    let avg = Tensor::from_vec(avg, (b, n), x.device())?.to_dtype(x.dtype())?;
    let per_seq = avg.matmul(&x.reshape((n, 1))?)?; // (B, 1)
    let seg = Tensor::from_vec(seg, n, x.device())?;
    per_seq.index_select(&seg, 0)?.reshape(n)
}
