//! The PPO stage's own settings (the loop's are `train::TrainerConfig`). The field names are the
//! TOML keys and, with `-` for `_`, the `rudder ppo` flags. Defaults follow TRL's last
//! `PPOConfig` / `RLOOConfig` / `GRPOConfig` where they had one.
//!
//! How the loop's batch settings map onto rollouts: one rollout is `batch_size × grad_accum`
//! prompts, each sampled `samples_per_prompt` times. It is then trained on for `ppo_epochs`
//! epochs of minibatches of `mini_batch_size` completions (one optimizer step each, the
//! minibatch split over the `grad_accum` micro-batches).
use crate::error::{Error, Result};
use lm::lora::{LoraConfig, LoraSpec};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The policy-gradient algorithm (`--algo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// PPO with a value head, GAE and a per-token KL penalty in the reward. Default.
    #[default]
    Ppo,
    /// REINFORCE leave-one-out: k samples per prompt, each baselined by the mean of the others.
    Rloo,
    /// Group relative policy optimisation: group-normalised rewards, KL as a loss term.
    Grpo,
}

/// The per-token KL estimator (`--kl-estimator`), with `r = π_ref / π` at the sampled token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `log π − log π_ref` (unbiased, can be negative). Default.
    #[default]
    K1,
    /// `r − 1 − log r` (unbiased, never negative, lower variance).
    K3,
}

/// PPO settings; every field has a default so a TOML file lists only what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    /// Policy to train (also the frozen reference): HF folder, hub id or `.gguf`. Required.
    pub model: Option<String>,
    /// Reward model folder (a `rudder reward train` output or a transformers
    /// `*ForSequenceClassification` with one label). Required unless `reward_cmd` is set.
    pub reward_model: Option<String>,
    /// External reward: a shell command reading `{"prompt","completion"}` JSONL on stdin and
    /// writing one number per line. Replaces `reward_model`. Default none.
    pub reward_cmd: Option<String>,
    /// Prompts, JSONL or a JSON array of `{"prompt": str | messages}`. Required.
    pub prompts: Option<PathBuf>,
    /// ppo, rloo or grpo. Default ppo.
    pub algo: Algo,
    /// Completions sampled per prompt. Default 1 for ppo, 4 for rloo and grpo (which need ≥ 2).
    pub samples_per_prompt: Option<usize>,
    /// Longest prompt in tokens; longer ones lose tokens from the left. Default 512.
    pub max_prompt_len: usize,
    /// New tokens per completion (TRL's `response_length`). Default 64.
    pub max_new_tokens: usize,
    /// Sampling temperature (> 0); log-probs are taken at the same temperature. Default 0.7.
    pub temperature: f64,
    /// Sample from the k most likely tokens (0 = off). Default 0.
    pub top_k: usize,
    /// Nucleus sampling threshold (1 = off). Default 1.
    pub top_p: f64,
    /// Subtracted from the score of a completion that never emits EOS. Default none.
    pub missing_eos_penalty: Option<f64>,
    /// Initial KL coefficient (β). Default 0.05.
    pub kl_coef: f64,
    /// k1 or k3. Default k1.
    pub kl_estimator: KlEstimator,
    /// Adaptive KL control (Ziegler et al. 2019): the per-completion KL to steer towards.
    /// Default none (fixed `kl_coef`).
    pub target_kl: Option<f64>,
    /// Horizon of the adaptive controller, in completions. Default 10000.
    pub kl_horizon: f64,
    /// Clip scores to `[-c, c]` (after the EOS penalty and normalisation). Default none.
    pub score_clip: Option<f64>,
    /// Normalise scores by running mean and standard deviation over all rollouts. Default false.
    pub normalize_scores: bool,
    /// Whiten the per-token rewards (scale only, as TRL). PPO only. Default false.
    pub whiten_rewards: bool,
    /// Discount γ. Default 1.0.
    pub gamma: f64,
    /// GAE λ. Default 0.95.
    pub lam: f64,
    /// Whiten advantages per rollout. Default true for ppo, false for rloo (grpo's are
    /// group-normalised already).
    pub whiten_advantages: Option<bool>,
    /// Policy ratio clip ε. Default 0.2.
    pub cliprange: f64,
    /// Value clip around the rollout's values. Default 0.2.
    pub cliprange_value: f64,
    /// Weight of the value loss. Default 0.1.
    pub vf_coef: f64,
    /// Epochs over each rollout. Default 4.
    pub ppo_epochs: usize,
    /// Completions per optimizer step. Default: the whole rollout.
    pub mini_batch_size: Option<usize>,
    /// Stop a rollout's updates once the approximate KL to the rollout policy exceeds this.
    /// Default none.
    pub early_stop_kl: Option<f64>,
    /// Value from a separate critic initialised from this reward model folder (trained too)
    /// instead of a head on the policy. PPO only. Default none.
    pub critic: Option<String>,
    /// Print and save (`samples.jsonl`) a few prompts, completions and rewards every N
    /// rollouts. Default 10.
    pub sample_every: usize,
    /// LoRA (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`); full training when unset.
    #[serde(flatten)]
    pub lora: LoraConfig,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            model: None,
            reward_model: None,
            reward_cmd: None,
            prompts: None,
            algo: Algo::Ppo,
            samples_per_prompt: None,
            max_prompt_len: 512,
            max_new_tokens: 64,
            temperature: 0.7,
            top_k: 0,
            top_p: 1.0,
            missing_eos_penalty: None,
            kl_coef: 0.05,
            kl_estimator: KlEstimator::K1,
            target_kl: None,
            kl_horizon: 10000.0,
            score_clip: None,
            normalize_scores: false,
            whiten_rewards: false,
            gamma: 1.0,
            lam: 0.95,
            whiten_advantages: None,
            cliprange: 0.2,
            cliprange_value: 0.2,
            vf_coef: 0.1,
            ppo_epochs: 4,
            mini_batch_size: None,
            early_stop_kl: None,
            critic: None,
            sample_every: 10,
            lora: LoraConfig::default(),
        }
    }
}

#[path = "config_check.rs"]
mod check;
