//! Golden numbers for `math`, made with torch 2.x reproducing TRL 0.11 / 1.16 code (snippet
//! below, run with the venv of `scripts/setup-python.sh`).
//!
//! ```python
//! import torch
//! torch.set_printoptions(precision=7)
//! # GAE exactly as TRL 0.11 PPOTrainer (gamma=0.9, lam=0.8), one row of 4 tokens
//! rewards = torch.tensor([[0.1, -0.2, 0.0, 1.5]]); values = torch.tensor([[0.5, 0.3, -0.1, 0.2]])
//! gamma, lam = 0.9, 0.8
//! lastgaelam = 0; rev = []
//! for t in reversed(range(4)):
//!     nextvalues = values[:, t + 1] if t < 3 else 0.0
//!     delta = rewards[:, t] + gamma * nextvalues - values[:, t]
//!     lastgaelam = delta + gamma * lam * lastgaelam
//!     rev.append(lastgaelam)
//! adv = torch.stack(rev[::-1], axis=1); print("gae adv", adv.tolist(), "returns", (adv + values).tolist())
//! # masked_whiten as TRL (unbiased var), rows of lengths 3 and 2 padded
//! x = torch.tensor([[1.0, 2.0, 4.0], [-1.0, 3.0, 0.0]]); m = torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()
//! mean = x[m].mean(); var = ((x - mean)**2)[m].mean() * (m.sum() / (m.sum() - 1))
//! w = (x - mean) * torch.rsqrt(var + 1e-8); print("whiten", w[m].tolist(), "noshift", (w + mean)[m].tolist())
//! # RLOO (TRL RLOOTrainer) with k=3 on two prompts; TRL lays samples out (k, prompts)
//! r = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]).reshape(2, 3).T  # (k, prompts)
//! baseline = (r.sum(0) - r) / (3 - 1); print("rloo", (r - baseline).T.flatten().tolist())
//! # GRPO (TRL GRPOTrainer, scale_rewards="group")
//! g = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]).view(-1, 3)
//! mean = g.mean(1).repeat_interleave(3); std = g.std(1).repeat_interleave(3)
//! print("grpo", ((g.flatten() - mean) / (std + 1e-4)).tolist())
//! # Adaptive KL controller (TRL AdaptiveKLController), init 0.05, target 6, horizon 10000
//! import numpy as np
//! v = 0.05
//! for cur, n in [(12.0, 64), (3.0, 64), (6.6, 128)]:
//!     e = np.clip(cur / 6 - 1, -0.2, 0.2); v *= 1 + e * n / 10000
//! print("akl", v)
//! ```
use super::*;

fn close(a: &[f32], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((f64::from(*x) - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
}

#[test]
fn gae_matches_trl() {
    let (adv, ret) = gae(&[0.1, -0.2, 0.0, 1.5], &[0.5, 0.3, -0.1, 0.2], 0.9, 0.8);
    close(&adv, &[0.0755744, 0.2855200, 1.216, 1.3]);
    close(&ret, &[0.5755744, 0.5855200, 1.116, 1.5]);
}

#[test]
fn whitening_matches_trl_masked_whiten() {
    let rows = vec![vec![1.0, 2.0, 4.0], vec![-1.0, 3.0]];
    let mut w = rows.clone();
    whiten(&mut w, true);
    close(
        &w.concat(),
        &[-0.4159002, 0.1039751, 1.1437256, -1.4556508, 0.6238503],
    );
    let mut w = rows;
    whiten(&mut w, false);
    close(
        &w.concat(),
        &[1.3840997, 1.903975, 2.9437256, 0.3443491, 2.4238503],
    );
}

#[test]
fn rloo_and_grpo_baselines() {
    let r = [1.0, 2.0, 6.0, 0.0, 0.0, 3.0];
    let a = rloo_advantages(&r, 3);
    assert_eq!(a, [-3.0, -1.5, 4.5, -1.5, -1.5, 3.0]);
    let g: Vec<f32> = grpo_advantages(&r, 3).iter().map(|&x| x as f32).collect();
    close(
        &g,
        &[
            -0.7559004, -0.3779502, 1.1338507, -0.5773169, -0.5773169, 1.1546339,
        ],
    );
    // A group whose samples all got the same reward carries no signal.
    assert_eq!(grpo_advantages(&[2.0, 2.0], 2), [0.0, 0.0]);
}

#[test]
fn adaptive_kl_controller_follows_ziegler() {
    let mut c = KlController {
        value: 0.05,
        target: Some(6.0),
        horizon: 10000.0,
    };
    for (kl, n) in [(12.0, 64), (3.0, 64), (6.6, 128)] {
        c.update(kl, n);
    }
    assert!((c.value - 0.0500639179751424).abs() < 1e-12, "{}", c.value);
    let mut fixed = KlController {
        target: None,
        ..c.clone()
    };
    fixed.update(100.0, 64);
    assert_eq!(fixed.value, c.value);
}

#[test]
fn explained_variance_and_running_moments() {
    let ret = vec![vec![1.0, 2.0], vec![3.0]];
    assert!((explained_variance(&ret, &ret) - 1.0).abs() < 1e-12);
    // Values off by a constant explain everything but the constant's absence of variance.
    let zeros = vec![vec![0.0, 0.0], vec![0.0]];
    assert!(explained_variance(&zeros, &ret).abs() < 1e-12);
    let mut m = RunningMoments::default();
    m.update(&[1.0, 2.0]);
    m.update(&[3.0, 4.0]);
    assert!((m.mean - 2.5).abs() < 1e-12 && (m.std() - 1.25f64.sqrt()).abs() < 1e-12);
}

/// `scale_rewards` group / batch / none and REINFORCE++ (with and without baseline) against
/// `fixtures/goldens/grpo.json` (`scripts/make_grpo_goldens.py`): TRL 1.16's advantage
/// formula and OpenRLHF's `compute_advantages_and_returns`, transcribed in torch there (neither
/// is callable on its own), e.g. for REINFORCE++:
///
/// ```python
/// # openrlhf/models/utils.py compute_reward + experience_maker.py get_cumulative_returns
/// reward = zeros_like(kl).scatter_(1, eos, scores[:, None]) - kl_coef * kl
/// for t in reversed(range(T)): run = reward[:, t] + gamma * run; returns[:, t] = run
/// mean = (returns * mask).sum() / mask.sum(); var = ((returns - mean)**2 * mask).sum() / mask.sum()
/// adv = (returns - mean) * var.clamp(min=1e-8).rsqrt()
/// ```
mod goldens {
    use super::*;
    use serde_json::Value;

    fn golden() -> Value {
        serde_json::from_str(include_str!("../../../fixtures/goldens/grpo.json"))
            .unwrap_or_default()
    }

    fn nums(v: &Value) -> Vec<f64> {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }

    #[test]
    fn scale_rewards_match_trl() {
        let g = &golden()["advantages"];
        let rewards = nums(&g["rewards"]);
        assert_eq!(rewards.len(), 12);
        for (how, scale) in [
            ("group", ScaleRewards::Group),
            ("batch", ScaleRewards::Batch),
            ("none", ScaleRewards::None),
        ] {
            let got: Vec<f32> = group_advantages(&rewards, 4, scale)
                .iter()
                .map(|&x| x as f32)
                .collect();
            close(&got, &nums(&g[how]));
        }
        // The second group scored alike: dynamic sampling drops it (and only it).
        assert_eq!(equal_groups(&rewards, 4), [false, true, false]);
    }

    #[test]
    fn reinforce_pp_matches_openrlhf() {
        let g = &golden()["reinforce"];
        let kls: Vec<Vec<f32>> = serde_json::from_value(g["kl"].clone()).unwrap_or_default();
        let scores = nums(&g["scores"]);
        assert_eq!(kls.len(), 4);
        for (key, baseline, gamma) in [
            ("reinforce_gamma_1", None, 1.0),
            ("reinforce_gamma_0.9", None, 0.9),
            ("reinforce_baseline", Some(2), 1.0),
        ] {
            let got = reinforce_advantages(&scores, &kls, baseline, 0.1, gamma, true);
            let want: Vec<Vec<f64>> = serde_json::from_value(g[key].clone()).unwrap_or_default();
            close(&got.concat(), &want.concat());
        }
    }
}
