//! Every term of the PPO/RLOO/GRPO objective. The KL penalty in the reward (per-token
//! estimators on plain numbers, [`kl`] and [`token_rewards`]); the update's losses on flat
//! `(N,)` tensors, one entry per completion token of a minibatch: PPO's clipped surrogate and
//! clipped value loss, GRPO's KL term [`k3`]; the policy surrogates (clipped with separate
//! bounds, CISPO, per-sequence ratios) are in `policy`. How tokens are weighted into one number
//! is a `(N,)` weight vector (see [`weights`]).
use crate::config::KlEstimator;
use candle_core::{Result, Tensor};

/// Per-token KL of the policy to the reference at the sampled tokens.
/// k1: `log π − log π_ref`; k3: `r − 1 − log r` with `r = π_ref / π`.
pub fn kl(est: KlEstimator, logp: &[f32], ref_logp: &[f32]) -> Vec<f32> {
    logp.iter()
        .zip(ref_logp)
        .map(|(&p, &q)| {
            let d = f64::from(p) - f64::from(q);
            match est {
                KlEstimator::K1 => d as f32,
                KlEstimator::K3 => ((-d).exp() - 1.0 + d) as f32,
            }
        })
        .collect()
}

/// PPO's per-token rewards: `−β · kl_t` on every token, plus the score on the last one.
pub fn token_rewards(kl: &[f32], score: f32, kl_coef: f64) -> Vec<f32> {
    let mut r: Vec<f32> = kl
        .iter()
        .map(|&k| (-kl_coef * f64::from(k)) as f32)
        .collect();
    if let Some(last) = r.last_mut() {
        *last += score;
    }
    r
}

/// How per-token losses become one number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// Mean over every token of the batch (PPO, TRL's `masked_mean`).
    Tokens,
    /// Mean over each completion's tokens, then over completions (GRPO's `loss_type="grpo"`).
    Sequences,
    /// Sum over tokens divided by completions × this constant (Dr. GRPO's
    /// `max_completion_length`).
    Constant(usize),
}

/// Per-token weights summing to 1 for completions of lengths `lens`.
pub fn weights(lens: &[usize], how: Reduce) -> Vec<f32> {
    let n: usize = lens.iter().sum();
    let b = lens.iter().filter(|&&l| l > 0).count().max(1);
    lens.iter()
        .flat_map(|&l| {
            let w = match how {
                Reduce::Tokens => 1.0 / n.max(1) as f32,
                Reduce::Sequences => 1.0 / (l * b) as f32,
                Reduce::Constant(c) => 1.0 / (lens.len() * c).max(1) as f32,
            };
            std::iter::repeat_n(w, l)
        })
        .collect()
}

/// `Σ x·w`, a scalar.
pub fn weighted(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    (x * w)?.sum_all()
}

pub(crate) fn mean(x: &Tensor) -> Result<f64> {
    Ok(f64::from(x.mean_all()?.to_scalar::<f32>()?))
}

/// PPO's clipped value loss `½ mean(max((V − R)², (clip(V, V_old ± ε) − R)²))` over tokens and
/// the share of tokens where the clipped term was the larger.
pub fn clipped_value_loss(
    values: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    clip: f64,
) -> Result<(Tensor, f64)> {
    let clipped = values
        .maximum(&(old_values - clip)?)?
        .minimum(&(old_values + clip)?)?;
    let l1 = (values - returns)?.sqr()?;
    let l2 = (clipped - returns)?.sqr()?;
    let loss = (l1.maximum(&l2)?.mean_all()? * 0.5)?;
    let clipfrac = mean(&l2.gt(&l1)?.to_dtype(values.dtype())?)?;
    Ok((loss, clipfrac))
}

/// Per-token k3 KL of the current policy to the reference, `exp(ref − logp) − (ref − logp) − 1`
/// (GRPO's loss term; differentiable through `logp`).
pub fn k3(logp: &Tensor, ref_logp: &Tensor) -> Result<Tensor> {
    let d = (ref_logp - logp)?;
    (d.exp()? - &d)? - 1.0
}

mod policy;
pub use policy::{clipped_policy_loss, policy_loss, PolicyTerms, Surrogate};

#[cfg(test)]
mod goldens;
#[cfg(test)]
mod tests;
