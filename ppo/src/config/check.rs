//! Checking a `PpoConfig` against itself and the loop's batch settings, before any tensor.
use super::*;
use train::StageSettings;
use train::TrainerConfig;

impl PpoConfig {
    /// Completions sampled per prompt.
    pub fn k(&self) -> usize {
        self.samples_per_prompt.unwrap_or(match self.algo {
            Algo::Ppo | Algo::Reinforce => 1,
            Algo::Rloo | Algo::Grpo | Algo::ReinforceBaseline => 4,
        })
    }

    /// Whether the algorithm compares a prompt's samples with each other (needs k ≥ 2).
    pub fn grouped(&self) -> bool {
        matches!(self.algo, Algo::Rloo | Algo::Grpo | Algo::ReinforceBaseline)
    }

    /// Whether advantages are whitened per rollout.
    pub fn whiten_advantages(&self) -> bool {
        self.whiten_advantages.unwrap_or(matches!(
            self.algo,
            Algo::Ppo | Algo::Reinforce | Algo::ReinforceBaseline
        ))
    }

    /// The upper clip: `epsilon_high`, else `cliprange` (cispo: an absolute cap, else 5.0).
    pub fn clip_high(&self) -> f64 {
        match (self.epsilon_high, self.loss_type) {
            (Some(e), _) => e,
            (None, LossType::Cispo) => 5.0,
            (None, _) => self.cliprange,
        }
    }

    /// Completions per micro-batch rollout: `batch_size × k`.
    pub fn rollout_rows(&self, trainer: &TrainerConfig) -> usize {
        trainer.batch_size * self.k()
    }

    /// Completions of one micro-batch in each optimizer step.
    pub fn micro_rows(&self, trainer: &TrainerConfig) -> usize {
        match self.mini_batch_size {
            Some(m) => m / trainer.grad_accum,
            None => self.rollout_rows(trainer),
        }
    }

    /// Optimizer steps per rollout: `ppo_epochs × minibatches`.
    pub fn updates_per_rollout(&self, trainer: &TrainerConfig) -> usize {
        self.ppo_epochs * (self.rollout_rows(trainer) / self.micro_rows(trainer).max(1))
    }

    /// Checks every value, and the batch settings they combine with.
    pub fn validate(&self, trainer: &TrainerConfig) -> Result<()> {
        self.validate_with(trainer, false)
    }

    /// As [`PpoConfig::validate`]; `own_scorer` when the caller supplies the rewards (a rule
    /// function), so neither `reward_model` nor `reward_cmd` is needed.
    pub fn validate_with(&self, trainer: &TrainerConfig, own_scorer: bool) -> Result<()> {
        self.require_inputs()?;
        match (&self.reward_model, &self.reward_cmd) {
            (None, None) if !own_scorer => {
                return Err(Error::setting(
                    "ppo",
                    "reward_model",
                    "required (--reward-model), or give --reward-cmd",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(Error::setting(
                    "ppo",
                    "reward_cmd",
                    "give either reward_model or reward_cmd, not both",
                ))
            }
            _ => {}
        }
        self.check_numbers()?;
        self.check_batches(trainer)?;
        self.check_algo_options()?;
        if self.critic.is_some() && self.algo != Algo::Ppo {
            return Err(Error::setting(
                "ppo",
                "critic",
                "only ppo uses a value function",
            ));
        }
        self.lora()?;
        Ok(())
    }

    fn check_numbers(&self) -> Result<()> {
        let positive = |field, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::setting(
                    "ppo",
                    field,
                    format!("must be > 0, got {v}"),
                ))
            }
        };
        positive("temperature", self.temperature)?;
        positive("kl_horizon", self.kl_horizon)?;
        positive("cliprange", self.cliprange)?;
        positive("cliprange_value", self.cliprange_value)?;
        let opt = [
            ("epsilon_high", self.epsilon_high),
            ("target_kl", self.target_kl),
            ("score_clip", self.score_clip),
            ("early_stop_kl", self.early_stop_kl),
        ];
        for (field, v) in opt {
            if let Some(v) = v {
                positive(field, v)?;
            }
        }
        let unit = [
            ("gamma", self.gamma),
            ("lam", self.lam),
            ("top_p", self.top_p),
        ];
        for (field, v) in unit {
            if !(v > 0.0 && v <= 1.0) {
                return Err(Error::setting(
                    "ppo",
                    field,
                    format!("must be in (0, 1], got {v}"),
                ));
            }
        }
        let non_negative = [
            ("kl_coef", self.kl_coef),
            ("vf_coef", self.vf_coef),
            (
                "missing_eos_penalty",
                self.missing_eos_penalty.unwrap_or(0.0),
            ),
        ];
        for (field, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::setting(
                    "ppo",
                    field,
                    format!("must be >= 0, got {v}"),
                ));
            }
        }
        let counts = [
            ("max_new_tokens", self.max_new_tokens),
            ("max_prompt_len", self.max_prompt_len),
            ("ppo_epochs", self.ppo_epochs),
            ("sample_every", self.sample_every),
        ];
        if let Some((field, _)) = counts.iter().find(|(_, v)| *v == 0) {
            return Err(Error::setting("ppo", field, "must be > 0"));
        }
        Ok(())
    }

    fn check_batches(&self, trainer: &TrainerConfig) -> Result<()> {
        let k = self.k();
        if k == 0 || (k < 2 && self.grouped()) {
            return Err(Error::setting(
                "ppo",
                "samples_per_prompt",
                format!(
                    "rloo, grpo and reinforce_baseline need at least 2 samples per prompt, got {k}"
                ),
            ));
        }
        if self.dynamic_sampling && k < 2 {
            return Err(Error::setting(
                "ppo",
                "dynamic_sampling",
                format!(
                    "drops groups of a prompt's samples: needs samples_per_prompt >= 2, got {k}"
                ),
            ));
        }
        let rows = self.rollout_rows(trainer);
        let g = trainer.grad_accum;
        if let Some(m) = self.mini_batch_size {
            if m == 0 || !m.is_multiple_of(g) || !rows.is_multiple_of(m / g) {
                return Err(Error::setting(
                    "ppo",
                    "mini_batch_size",
                    format!(
                        "{m} must be a multiple of grad_accum ({g}) whose share per micro-batch \
                         ({}) divides batch_size × samples_per_prompt ({rows})",
                        m / g.max(1)
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl PpoConfig {
    /// GRPO's own options (TRL's `loss_type`, `importance_sampling_level`, `scale_rewards`)
    /// only with `--algo grpo`; REINFORCE++-baseline only with `gamma = 1` (as OpenRLHF).
    fn check_algo_options(&self) -> Result<()> {
        let grpo_only = [
            ("loss_type", self.loss_type != LossType::Grpo, "grpo"),
            (
                "importance_sampling_level",
                self.importance_sampling_level != ImportanceSamplingLevel::Token,
                "token",
            ),
            (
                "scale_rewards",
                self.scale_rewards != ScaleRewards::Group,
                "group",
            ),
        ];
        for (field, set, default) in grpo_only {
            if set && self.algo != Algo::Grpo {
                let algo = self.algo.name();
                return Err(Error::setting(
                    "ppo",
                    field,
                    format!("applies to --algo grpo only (got {algo}); leave it at {default}"),
                ));
            }
        }
        if self.algo == Algo::ReinforceBaseline && self.gamma != 1.0 {
            return Err(Error::setting(
                "ppo",
                "gamma",
                format!(
                    "reinforce_baseline uses gamma = 1 (as OpenRLHF), got {}",
                    self.gamma
                ),
            ));
        }
        Ok(())
    }
}

impl train::StageSettings for PpoConfig {
    const FILES: train::RunFiles = crate::run::FILES;
    const REQUIRED: &'static [&'static str] = &["model", "prompts"];
    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
    fn inputs(&self) -> Vec<train::Input<'_>> {
        let models = [
            ("model", self.model.as_deref()),
            ("reward_model", self.reward_model.as_deref()),
            ("critic", self.critic.as_deref()),
        ];
        train::inputs::set(&models, &[("prompts", self.prompts.as_deref())])
    }
    fn lora_settings(&self) -> &LoraConfig {
        &self.lora
    }
    /// As every stage's, but without dropout: the ratio of new to old log-probs must start at
    /// 1 (TRL's PPO trainer turns all dropout off for the same reason).
    fn lora(&self) -> Result<Option<LoraSpec>> {
        if self.lora.lora_dropout != 0.0 {
            let why = "PPO, RLOO and GRPO train without dropout; leave it at 0";
            return Err(Error::setting("ppo", "lora_dropout", why));
        }
        (self.lora.spec()).map_err(|(field, why)| Error::setting("ppo", field, why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> PpoConfig {
        PpoConfig {
            model: Some("m".into()),
            reward_model: Some("rm".into()),
            prompts: Some("p.jsonl".into()),
            ..Default::default()
        }
    }

    fn err(c: &PpoConfig, t: &TrainerConfig) -> String {
        c.validate(t)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn defaults_validate_and_bad_values_name_the_field() {
        let t = TrainerConfig::default();
        assert!(base().validate(&t).is_ok());
        assert_eq!(base().updates_per_rollout(&t), 4);
        let grpo = PpoConfig {
            algo: Algo::Grpo,
            mini_batch_size: Some(8),
            ..base()
        };
        // 8 prompts × 4 samples = 32 rows, minibatches of 8: 4 per epoch, 4 epochs.
        assert_eq!((grpo.k(), grpo.updates_per_rollout(&t)), (4, 16));
        assert!(!grpo.whiten_advantages() && base().whiten_advantages());
        let cases = [
            (
                PpoConfig {
                    temperature: 0.0,
                    ..base()
                },
                "`temperature`",
            ),
            (PpoConfig { lam: 1.5, ..base() }, "`lam`"),
            (
                PpoConfig {
                    reward_model: None,
                    ..base()
                },
                "`reward_model`",
            ),
            (
                PpoConfig {
                    reward_cmd: Some("x".into()),
                    ..base()
                },
                "`reward_cmd`",
            ),
            (
                PpoConfig {
                    mini_batch_size: Some(3),
                    ..base()
                },
                "`mini_batch_size`",
            ),
            (
                PpoConfig {
                    algo: Algo::Rloo,
                    samples_per_prompt: Some(1),
                    ..base()
                },
                "`samples_per_prompt`",
            ),
            (
                PpoConfig {
                    critic: Some("c".into()),
                    algo: Algo::Grpo,
                    ..base()
                },
                "`critic`",
            ),
            (
                PpoConfig {
                    kl_coef: -1.0,
                    ..base()
                },
                "`kl_coef`",
            ),
            (
                PpoConfig {
                    loss_type: LossType::Dapo,
                    ..base()
                },
                "`loss_type`",
            ),
            (
                PpoConfig {
                    algo: Algo::Rloo,
                    scale_rewards: ScaleRewards::Batch,
                    ..base()
                },
                "`scale_rewards`",
            ),
            (
                PpoConfig {
                    importance_sampling_level: ImportanceSamplingLevel::Sequence,
                    ..base()
                },
                "`importance_sampling_level`",
            ),
            (
                PpoConfig {
                    epsilon_high: Some(0.0),
                    ..base()
                },
                "`epsilon_high`",
            ),
            (
                PpoConfig {
                    dynamic_sampling: true,
                    ..base()
                },
                "`dynamic_sampling`",
            ),
            (
                PpoConfig {
                    algo: Algo::ReinforceBaseline,
                    gamma: 0.9,
                    ..base()
                },
                "`gamma`",
            ),
            (
                PpoConfig {
                    algo: Algo::ReinforceBaseline,
                    samples_per_prompt: Some(1),
                    ..base()
                },
                "`samples_per_prompt`",
            ),
            (
                PpoConfig {
                    prompts: None,
                    ..base()
                },
                "`prompts`",
            ),
        ];
        for (c, field) in cases {
            assert!(err(&c, &t).contains(field), "{field}: {}", err(&c, &t));
        }
        assert!(serde_json::from_str::<PpoConfig>(r#"{"kl_coeff": 1}"#).is_err());
        let c: PpoConfig =
            serde_json::from_str(r#"{"algo": "rloo", "kl_estimator": "k3"}"#).unwrap_or_default();
        assert_eq!((c.algo, c.kl_estimator), (Algo::Rloo, KlEstimator::K3));
        let c: PpoConfig = serde_json::from_str(
            r#"{"algo": "reinforce_baseline", "loss_type": "dr_grpo", "scale_rewards": "none",
                "importance_sampling_level": "sequence"}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            (
                c.algo,
                c.loss_type,
                c.scale_rewards,
                c.importance_sampling_level
            ),
            (
                Algo::ReinforceBaseline,
                LossType::DrGrpo,
                ScaleRewards::None,
                ImportanceSamplingLevel::Sequence
            )
        );
        let bad = serde_json::from_str::<PpoConfig>(r#"{"loss_type": "ppo"}"#);
        let bad = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(bad.contains("dr_grpo") && bad.contains("cispo"), "{bad}");
        let reinforce = PpoConfig {
            algo: Algo::Reinforce,
            ..base()
        };
        assert!(reinforce.validate(&t).is_ok() && reinforce.k() == 1);
        assert!(reinforce.whiten_advantages());
        let cispo = PpoConfig {
            algo: Algo::Grpo,
            loss_type: LossType::Cispo,
            ..base()
        };
        assert!(cispo.validate(&t).is_ok());
        assert_eq!((cispo.clip_high(), base().clip_high()), (5.0, 0.2));
    }
}
