//! The update's losses on `(B, L)` tensors (one column per completion token, `mask` 1 on real
//! tokens): PPO's clipped surrogate and clipped value loss, GRPO's KL term.
use candle_core::{Result, Tensor, D};

/// How per-token losses become one number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// Mean over every real token of the batch (PPO, TRL's `masked_mean`).
    Tokens,
    /// Mean over each completion's tokens, then over completions (GRPO's `loss_type="grpo"`).
    Sequences,
}

/// Masked mean of `x` `(B, L)` as `reduce` says; a scalar.
pub fn reduce(x: &Tensor, mask: &Tensor, how: Reduce) -> Result<Tensor> {
    let xm = (x * mask)?;
    match how {
        Reduce::Tokens => xm.sum_all()? / mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64,
        Reduce::Sequences => {
            let n = mask.sum(D::Minus1)?.clamp(1f32, f32::MAX)?;
            (xm.sum(D::Minus1)? / n)?.mean_all()
        }
    }
}

/// Scalar of a masked token mean (for metrics).
fn token_mean(x: &Tensor, mask: &Tensor) -> Result<f64> {
    Ok(f64::from(
        reduce(x, mask, Reduce::Tokens)?.to_scalar::<f32>()?,
    ))
}

/// The clipped surrogate `max(−A r, −A clip(r, 1 ± ε))` with `r = exp(logp − old_logp)`.
/// Returns the loss, the fraction of tokens where the clip was active, and the approximate KL
/// `½ E[(logp − old_logp)²]` to the rollout policy (TRL's `approxkl`).
pub fn clipped_policy_loss(
    logp: &Tensor,
    old_logp: &Tensor,
    adv: &Tensor,
    mask: &Tensor,
    clip: f64,
    how: Reduce,
) -> Result<(Tensor, f64, f64)> {
    let diff = (logp - old_logp)?;
    let ratio = diff.exp()?;
    let neg_adv = adv.neg()?;
    let l1 = (&neg_adv * &ratio)?;
    let l2 = (&neg_adv * ratio.clamp(1.0 - clip, 1.0 + clip)?)?;
    let loss = reduce(&l1.maximum(&l2)?, mask, how)?;
    let clipfrac = token_mean(&l2.gt(&l1)?.to_dtype(mask.dtype())?, mask)?;
    let approx_kl = 0.5 * token_mean(&diff.detach().sqr()?, mask)?;
    Ok((loss, clipfrac, approx_kl))
}

/// PPO's clipped value loss `½ E[max((V − R)², (clip(V, V_old ± ε) − R)²)]` and the fraction
/// of tokens where the clipped term was the larger.
pub fn clipped_value_loss(
    values: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    mask: &Tensor,
    clip: f64,
) -> Result<(Tensor, f64)> {
    let lo = (old_values - clip)?;
    let hi = (old_values + clip)?;
    let clipped = values.maximum(&lo)?.minimum(&hi)?;
    let l1 = (values - returns)?.sqr()?;
    let l2 = (clipped - returns)?.sqr()?;
    let loss = (reduce(&l1.maximum(&l2)?, mask, Reduce::Tokens)? * 0.5)?;
    let clipfrac = token_mean(&l2.gt(&l1)?.to_dtype(mask.dtype())?, mask)?;
    Ok((loss, clipfrac))
}

/// Per-token k3 KL of the current policy to the reference, `exp(ref − logp) − (ref − logp) − 1`
/// (GRPO's loss term; differentiable through `logp`).
pub fn k3(logp: &Tensor, ref_logp: &Tensor) -> Result<Tensor> {
    let d = (ref_logp - logp)?;
    (d.exp()? - &d)? - 1.0
}

#[cfg(test)]
#[path = "loss_tests.rs"]
mod tests;
