//! The Bradley–Terry pairwise loss of TRL 1.16's `RewardTrainer.compute_loss`, and the numbers
//! logged with it.
use crate::Result;
use candle_core::Tensor;
use std::collections::BTreeMap;

/// Mean over pairs of `-log σ(r_c - r_r - margin)`, plus `coef · mean((r_c + r_r)²)` when
/// `center_coef` is set (TRL's `center_rewards_coefficient`, which keeps rewards near zero).
/// `chosen`, `rejected` and `margin`: `(P,)` f32.
pub fn pairwise_loss(
    chosen: &Tensor,
    rejected: &Tensor,
    margin: Option<&Tensor>,
    center_coef: Option<f64>,
) -> Result<Tensor> {
    let mut diff = (chosen - rejected)?;
    if let Some(m) = margin {
        diff = (diff - m)?;
    }
    let mut loss = train::loss::log_sigmoid(&diff)?.neg()?.mean_all()?;
    if let Some(c) = center_coef {
        let center = (chosen + rejected)?.sqr()?.mean_all()?;
        loss = (loss + (center * c)?)?;
    }
    Ok(loss)
}

/// The metrics TRL logs for a batch: `accuracy` (share with r_c > r_r), `margin`
/// (mean r_c − r_r), and min/mean/max over all rewards.
pub fn batch_metrics(chosen: &[f32], rejected: &[f32]) -> BTreeMap<String, f64> {
    let n = chosen.len().max(1) as f64;
    let pairs = chosen.iter().zip(rejected);
    let correct = pairs.clone().filter(|(c, r)| c > r).count() as f64;
    let margin = pairs.map(|(c, r)| (c - r) as f64).sum::<f64>() / n;
    let all: Vec<f64> = chosen.iter().chain(rejected).map(|&x| x as f64).collect();
    let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
    let min = all.iter().copied().fold(f64::INFINITY, f64::min);
    let max = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    BTreeMap::from([
        ("accuracy".to_string(), correct / n),
        ("margin".to_string(), margin),
        ("min_reward".to_string(), min),
        ("mean_reward".to_string(), mean),
        ("max_reward".to_string(), max),
    ])
}
