//! The arithmetic of a rollout on plain numbers: GAE, whitening, RLOO and GRPO baselines,
//! REINFORCE++'s returns and normalisation, the
//! adaptive KL controller and running score moments (the KL terms are in [`crate::loss`]).
//! Rows are completions of different lengths (`&[Vec<f32>]`, one value per completion token);
//! sums are taken in f64.
use crate::config::ScaleRewards;
use serde::{Deserialize, Serialize};

/// Generalised advantage estimation over one completion (the value after the last token is
/// 0): `δ_t = r_t + γ V_{t+1} − V_t`, `A_t = δ_t + γλ A_{t+1}`; returns `(A, A + V)`.
pub fn gae(rewards: &[f32], values: &[f32], gamma: f64, lam: f64) -> (Vec<f32>, Vec<f32>) {
    let n = rewards.len();
    let mut adv = vec![0f32; n];
    let mut last = 0f64;
    for t in (0..n).rev() {
        let next = if t + 1 < n {
            f64::from(values[t + 1])
        } else {
            0.0
        };
        let delta = f64::from(rewards[t]) + gamma * next - f64::from(values[t]);
        last = delta + gamma * lam * last;
        adv[t] = last as f32;
    }
    let ret = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, ret)
}

/// Mean and unbiased variance over every value of every row (TRL's `masked_mean`/`masked_var`).
pub fn moments(rows: &[Vec<f32>]) -> (f64, f64) {
    let n: usize = rows.iter().map(Vec::len).sum();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = rows.iter().flatten().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let ss: f64 = rows
        .iter()
        .flatten()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum();
    let var = if n > 1 { ss / (n - 1) as f64 } else { 0.0 };
    (mean, var)
}

/// TRL's `masked_whiten`: `(x − mean) / sqrt(var + 1e-8)`, adding the mean back when
/// `shift_mean` is false.
pub fn whiten(rows: &mut [Vec<f32>], shift_mean: bool) {
    let (mean, var) = moments(rows);
    let scale = 1.0 / (var + 1e-8).sqrt();
    for x in rows.iter_mut().flatten() {
        let mut w = (f64::from(*x) - mean) * scale;
        if !shift_mean {
            w += mean;
        }
        *x = w as f32;
    }
}

/// RLOO advantages: rewards grouped by prompt (`k` consecutive samples each); each sample's
/// baseline is the mean of the other `k − 1` samples of its prompt.
pub fn rloo_advantages(rewards: &[f64], k: usize) -> Vec<f64> {
    rewards
        .chunks(k)
        .flat_map(|g| {
            let sum: f64 = g.iter().sum();
            let others = (g.len() - 1).max(1) as f64;
            g.iter().map(move |&r| r - (sum - r) / others)
        })
        .collect()
}

/// GRPO advantages: `(r − mean_group) / (std_group + 1e-4)`, std unbiased (torch's default).
pub fn grpo_advantages(rewards: &[f64], k: usize) -> Vec<f64> {
    group_advantages(rewards, k, ScaleRewards::Group)
}

/// GRPO advantages as TRL's `scale_rewards`: `r − mean_group`, divided by `std + 1e-4` with the
/// group's (`Group`) or the whole rollout's (`Batch`) unbiased std, or not at all (`None`).
pub fn group_advantages(rewards: &[f64], k: usize, scale: ScaleRewards) -> Vec<f64> {
    let batch_std = std(rewards);
    rewards
        .chunks(k)
        .flat_map(|g| {
            let mean = g.iter().sum::<f64>() / g.len() as f64;
            let div = match scale {
                ScaleRewards::Group => std(g) + 1e-4,
                ScaleRewards::Batch => batch_std + 1e-4,
                ScaleRewards::None => 1.0,
            };
            g.iter().map(move |&r| (r - mean) / div)
        })
        .collect()
}

/// For each group of `k` consecutive rewards: whether they are all equal (to 1e-8; TRL's
/// zero-std groups, which dynamic sampling drops).
pub fn equal_groups(rewards: &[f64], k: usize) -> Vec<bool> {
    rewards
        .chunks(k.max(1))
        .map(|g| {
            let lo = g.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = g.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            hi - lo <= 1e-8
        })
        .collect()
}

/// Unbiased standard deviation (0 for fewer than two values).
fn std(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n.max(1.0);
    let ss = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
    (ss / (n - 1.0).max(1.0)).sqrt()
}

/// Discounted returns of one completion's per-token rewards: `G_t = r_t + γ G_{t+1}`.
pub fn returns(rewards: &[f32], gamma: f64) -> Vec<f32> {
    let mut g = 0f64;
    let mut out = vec![0f32; rewards.len()];
    for (o, &r) in out.iter_mut().zip(rewards).rev() {
        g = f64::from(r) + gamma * g;
        *o = g as f32;
    }
    out
}

/// REINFORCE++'s advantages as OpenRLHF (`compute_advantages_and_returns` with
/// `advantage_estimator` reinforce, or reinforce_baseline when `baseline` gives the group size
/// k): each completion's per-token rewards are `−β·kl_t` plus its score on the last token (the
/// score minus its prompt's mean score with a baseline), their discounted returns are the
/// advantages, normalised over every token of the rollout ([`normalize_tokens`]).
pub fn reinforce_advantages(
    scores: &[f64],
    kls: &[Vec<f32>],
    baseline: Option<usize>,
    kl_coef: f64,
    gamma: f64,
    std: bool,
) -> Vec<Vec<f32>> {
    let scores = match baseline {
        Some(k) => group_advantages(scores, k, ScaleRewards::None),
        None => scores.to_vec(),
    };
    let mut advs: Vec<Vec<f32>> = kls
        .iter()
        .zip(&scores)
        .map(|(kl, &r)| returns(&crate::loss::token_rewards(kl, r as f32, kl_coef), gamma))
        .collect();
    normalize_tokens(&mut advs, std);
    advs
}

/// REINFORCE++'s normalisation (OpenRLHF): every token of every row together,
/// `(x − mean) · rsqrt(max(var, 1e-8))` with the population variance; `std = false` only
/// subtracts the mean (OpenRLHF's `no_advantage_std_norm`).
pub fn normalize_tokens(rows: &mut [Vec<f32>], std: bool) {
    let n = rows.iter().map(Vec::len).sum::<usize>().max(1) as f64;
    let mean = rows.iter().flatten().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = rows
        .iter()
        .flatten()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    let scale = if std { 1.0 / var.max(1e-8).sqrt() } else { 1.0 };
    for x in rows.iter_mut().flatten() {
        *x = ((f64::from(*x) - mean) * scale) as f32;
    }
}

/// `1 − Var(returns − values) / Var(returns)` over every token: how much of the return the
/// value function explains (1 perfect, 0 no better than a constant).
pub fn explained_variance(values: &[Vec<f32>], returns: &[Vec<f32>]) -> f64 {
    let diff: Vec<Vec<f32>> = values
        .iter()
        .zip(returns)
        .map(|(v, r)| r.iter().zip(v).map(|(r, v)| r - v).collect())
        .collect();
    let (_, var_r) = moments(returns);
    let (_, var_d) = moments(&diff);
    if var_r > 0.0 {
        1.0 - var_d / var_r
    } else {
        f64::NAN
    }
}

/// The KL coefficient: fixed, or adaptive (Ziegler et al. 2019, as TRL's
/// `AdaptiveKLController`): `β ← β (1 + clip(KL / target − 1, ±0.2) · n / horizon)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KlController {
    pub value: f64,
    pub target: Option<f64>,
    pub horizon: f64,
}

impl KlController {
    /// Updates with the mean per-completion KL of a rollout of `n` completions.
    pub fn update(&mut self, kl: f64, n: usize) {
        if let Some(target) = self.target {
            let err = (kl / target - 1.0).clamp(-0.2, 0.2);
            self.value *= 1.0 + err * n as f64 / self.horizon;
        }
    }
}

/// Running mean and variance of every score seen (Welford), for `normalize_scores`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunningMoments {
    pub count: u64,
    pub mean: f64,
    pub m2: f64,
}

impl RunningMoments {
    pub fn update(&mut self, xs: &[f64]) {
        for &x in xs {
            self.count += 1;
            let d = x - self.mean;
            self.mean += d / self.count as f64;
            self.m2 += d * (x - self.mean);
        }
    }

    /// Standard deviation (population); 1 until two values have been seen.
    pub fn std(&self) -> f64 {
        if self.count < 2 {
            return 1.0;
        }
        (self.m2 / self.count as f64).sqrt().max(1e-8)
    }
}

#[cfg(test)]
mod tests;
