//! Phase 4 of a rollout: per-token KL, the rewards it shapes, and the advantages each
//! algorithm trains on; dynamic sampling; the rollout's summary metrics and the sample table.
use crate::config::Algo;
use crate::stage::{PpoStage, Sample};
use crate::{loss, math};
use std::collections::BTreeMap;
use std::io::Write;

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n.max(1) as f64
}

impl PpoStage {
    /// Fills `advantages` (and PPO's `returns`), logs KL and rewards, updates the KL controller.
    pub(crate) fn advantages(&mut self, samples: &mut [Sample], m: &mut BTreeMap<String, f64>) {
        let (est, beta) = (self.cfg.kl_estimator, self.state.kl.value);
        let kls: Vec<Vec<f32>> = samples
            .iter()
            .map(|s| loss::kl(est, &s.old_logp, &s.ref_logp))
            .collect();
        let seq_kl: Vec<f64> = kls
            .iter()
            .map(|k| k.iter().map(|&x| f64::from(x)).sum())
            .collect();
        match self.cfg.algo {
            Algo::Ppo => self.gae_advantages(samples, &kls, m),
            Algo::Reinforce | Algo::ReinforceBaseline => self.reinforce_advantages(samples, &kls),
            Algo::Rloo | Algo::Grpo => self.sequence_advantages(samples, &seq_kl),
        }
        let kl_mean = mean(seq_kl.iter().copied());
        m.insert("objective/kl".into(), kl_mean);
        m.insert("objective/non_score_reward".into(), -beta * kl_mean);
        let rlhf = samples
            .iter()
            .zip(&seq_kl)
            .map(|(s, kl)| s.score - beta * kl);
        m.insert("objective/rlhf_reward".into(), mean(rlhf));
        m.insert("kl_coef".into(), beta);
        self.state.kl.update(kl_mean, samples.len());
    }

    /// RLOO: score − β·ΣKL against the mean of the prompt's other samples; GRPO: scores
    /// centred on the group mean and scaled (`scale_rewards`), the KL being a loss term. One
    /// advantage per completion, on each of its tokens.
    fn sequence_advantages(&self, samples: &mut [Sample], seq_kl: &[f64]) {
        let (beta, k) = (self.state.kl.value, self.cfg.k());
        let adv = match self.cfg.algo {
            Algo::Rloo => {
                let seq: Vec<f64> = samples
                    .iter()
                    .zip(seq_kl)
                    .map(|(s, kl)| s.score - beta * kl)
                    .collect();
                math::rloo_advantages(&seq, k)
            }
            _ => {
                let seq: Vec<f64> = samples.iter().map(|s| s.score).collect();
                math::group_advantages(&seq, k, self.cfg.scale_rewards)
            }
        };
        let mut adv: Vec<Vec<f32>> = adv.iter().map(|&a| vec![a as f32]).collect();
        if self.cfg.whiten_advantages() {
            math::whiten(&mut adv, true);
        }
        for (s, a) in samples.iter_mut().zip(adv) {
            s.advantages = vec![a[0]; s.ids.completion.len()];
        }
    }

    /// REINFORCE++ as OpenRLHF: per-token rewards (−β·KL, the score on the last token; for
    /// reinforce_baseline the score minus its prompt's mean score), discounted returns, then
    /// every token of the rollout normalised together. No critic.
    fn reinforce_advantages(&self, samples: &mut [Sample], kls: &[Vec<f32>]) {
        let scores: Vec<f64> = samples.iter().map(|s| s.score).collect();
        let baseline = (self.cfg.algo == Algo::ReinforceBaseline).then(|| self.cfg.k());
        let advs = math::reinforce_advantages(
            &scores,
            kls,
            baseline,
            self.state.kl.value,
            self.cfg.gamma,
            self.cfg.whiten_advantages(),
        );
        for (s, a) in samples.iter_mut().zip(advs) {
            s.advantages = a;
        }
    }

    /// Logs the share of prompts whose samples all scored the same (TRL's
    /// `frac_reward_zero_std`); with `dynamic_sampling` drops those groups (DAPO's dynamic
    /// sampling, without resampling) and logs `dynamic_sampling/dropped_groups`. A rollout
    /// whose groups are all alike is kept whole (nothing would be left to train on).
    pub(crate) fn drop_equal_groups(
        &self,
        samples: &mut Vec<Sample>,
        m: &mut BTreeMap<String, f64>,
    ) {
        let k = self.cfg.k();
        let scores: Vec<f64> = samples.iter().map(|s| s.score).collect();
        let equal = math::equal_groups(&scores, k);
        let n_equal = equal.iter().filter(|&&e| e).count();
        m.insert(
            "frac_reward_zero_std".into(),
            n_equal as f64 / equal.len().max(1) as f64,
        );
        if !self.cfg.dynamic_sampling {
            return;
        }
        let dropped = if n_equal == equal.len() {
            tracing::warn!("dynamic sampling: every group scored alike; the rollout is kept whole");
            0
        } else {
            let mut i = 0;
            samples.retain(|_| {
                i += 1;
                !equal[(i - 1) / k]
            });
            n_equal
        };
        m.insert("dynamic_sampling/dropped_groups".into(), dropped as f64);
    }

    /// PPO: per-token rewards (−β·KL, score on the last token), GAE, whitening.
    fn gae_advantages(
        &self,
        samples: &mut [Sample],
        kls: &[Vec<f32>],
        m: &mut BTreeMap<String, f64>,
    ) {
        let beta = self.state.kl.value;
        let mut rewards: Vec<Vec<f32>> = samples
            .iter()
            .zip(kls)
            .map(|(s, kl)| loss::token_rewards(kl, s.score as f32, beta))
            .collect();
        if self.cfg.whiten_rewards {
            math::whiten(&mut rewards, false);
        }
        let (mut advs, mut rets) = (vec![], vec![]);
        for (s, r) in samples.iter().zip(&rewards) {
            let (a, ret) = math::gae(r, &s.values, self.cfg.gamma, self.cfg.lam);
            advs.push(a);
            rets.push(ret);
        }
        let values: Vec<Vec<f32>> = samples.iter().map(|s| s.values.clone()).collect();
        m.insert(
            "val/explained_var".into(),
            math::explained_variance(&values, &rets),
        );
        m.insert("val/mean".into(), math::moments(&values).0);
        if self.cfg.whiten_advantages() {
            math::whiten(&mut advs, true);
        }
        for ((s, a), r) in samples.iter_mut().zip(advs).zip(rets) {
            (s.advantages, s.returns) = (a, r);
        }
    }

    /// Scores, lengths and EOS rate of a rollout.
    pub(crate) fn describe(&self, samples: &[Sample], m: &mut BTreeMap<String, f64>) {
        let n = samples.len().max(1) as f64;
        m.insert(
            "objective/scores".into(),
            mean(samples.iter().map(|s| s.raw_score)),
        );
        m.insert(
            "objective/scores_shaped".into(),
            mean(samples.iter().map(|s| s.score)),
        );
        m.insert(
            "completion_length".into(),
            mean(samples.iter().map(|s| s.ids.completion.len() as f64)),
        );
        let eos = samples.iter().filter(|s| s.finished).count() as f64;
        m.insert("eos_rate".into(), eos / n);
    }

    /// Every `sample_every` rollouts: a few prompts, completions and rewards to the log and to
    /// `samples.jsonl`.
    pub(crate) fn log_samples(&self, index: usize, samples: &[Sample]) {
        if !index.is_multiple_of(self.cfg.sample_every) {
            return;
        }
        let path = self.out.join("samples.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path);
        let mut file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!("cannot write {}: {e}", path.display());
                None
            }
        };
        for s in samples.iter().take(4) {
            let prompt = &self.prompts[s.prompt].text;
            tracing::info!(
                "rollout {index} | score {:+.3} | {:?} -> {:?}",
                s.raw_score,
                prompt
                    .chars()
                    .rev()
                    .take(60)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>(),
                s.text.chars().take(120).collect::<String>()
            );
            let row = serde_json::json!({
                "rollout": index, "step": self.state.step, "prompt": prompt,
                "completion": s.text, "score": s.raw_score, "finished": s.finished,
            });
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{row}");
            }
        }
    }
}
