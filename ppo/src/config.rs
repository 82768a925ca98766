//! The PPO stage's own settings (the loop's are `train::TrainerConfig`). The field names are the
//! TOML keys and, with `-` for `_`, the `rudder ppo` flags. Defaults follow TRL's last
//! `PPOConfig` / `RLOOConfig` / `GRPOConfig` where they had one.
//!
//! How the loop's batch settings map onto rollouts: one rollout is `batch_size × grad_accum`
//! prompts, each sampled `samples_per_prompt` times. It is then trained on for `ppo_epochs`
//! epochs of minibatches of `mini_batch_size` completions (one optimizer step each, the
//! minibatch split over the `grad_accum` micro-batches).
use crate::{Error, Result};
use lm::lora::{LoraConfig, LoraSpec};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The policy-gradient algorithm (`--algo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// PPO with a value head, GAE and a per-token KL penalty in the reward. Default.
    #[default]
    Ppo,
    /// REINFORCE leave-one-out: k samples per prompt, each baselined by the mean of the others.
    Rloo,
    /// Group relative policy optimisation: group-normalised rewards, KL as a loss term.
    Grpo,
    /// REINFORCE++ (OpenRLHF's `advantage_estimator=reinforce`): per-token returns of the
    /// reward with a per-token KL penalty, normalised over every token of the rollout; no
    /// critic, one sample per prompt allowed.
    Reinforce,
    /// REINFORCE++-baseline (OpenRLHF's `reinforce_baseline`): as `reinforce`, after
    /// subtracting each prompt's mean score from its samples' scores.
    #[value(name = "reinforce_baseline")]
    #[serde(rename = "reinforce_baseline")]
    ReinforceBaseline,
}

impl Algo {
    /// The `--algo` value.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Ppo => "ppo",
            Algo::Rloo => "rloo",
            Algo::Grpo => "grpo",
            Algo::Reinforce => "reinforce",
            Algo::ReinforceBaseline => "reinforce_baseline",
        }
    }
}

/// How GRPO's per-token losses become one number, and which surrogate (`--loss-type`, TRL's
/// `GRPOConfig.loss_type` names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Mean over each completion's tokens, then over completions. Rudder's default.
    #[default]
    Grpo,
    /// Sum over tokens divided by completions × `max_new_tokens` (Dr. GRPO).
    #[value(name = "dr_grpo")]
    DrGrpo,
    /// Mean over every token of the optimizer step (DAPO; TRL's default).
    Dapo,
    /// Mean over every token of the micro-batch.
    Bnpo,
    /// The ratio truncated at `epsilon_high`, detached, times advantage × log-prob; mean over
    /// tokens (MiniMax-M1's CISPO).
    Cispo,
}

/// Where the policy ratio is taken (`--importance-sampling-level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ImportanceSamplingLevel {
    /// One ratio per token. Default.
    #[default]
    Token,
    /// One ratio per completion, `exp(mean_t(log π − log π_old))` (GSPO).
    Sequence,
}

/// How GRPO scales group-centred rewards (`--scale-rewards`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScaleRewards {
    /// Divided by the group's standard deviation (+1e-4). Default.
    #[default]
    Group,
    /// Divided by the standard deviation of every reward of the rollout.
    Batch,
    /// Not scaled (Dr. GRPO).
    None,
}

/// The per-token KL estimator (`--kl-estimator`), with `r = π_ref / π` at the sampled token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `log π − log π_ref` (unbiased, can be negative). Default.
    #[default]
    K1,
    /// `r − 1 − log r` (unbiased, never negative, lower variance).
    K3,
}

/// PPO settings: the `rudder ppo` flags and the TOML keys; every field has a default (its
/// `#[arg]`) so a TOML file lists only what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    /// Policy to train, also the frozen reference: HF folder, hub id or .gguf (required).
    #[arg(long)]
    pub model: Option<String>,
    /// Reward model folder (a `rudder reward train` output or a transformers
    /// *ForSequenceClassification with one label) (required unless --reward-cmd).
    #[arg(long)]
    pub reward_model: Option<String>,
    /// External reward: a shell command reading {"prompt","completion"} JSONL on stdin and
    /// writing one number per line; replaces --reward-model [none].
    #[arg(long)]
    pub reward_cmd: Option<String>,
    /// Prompts, JSONL or a JSON array of {"prompt": str | messages} (required).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// The policy-gradient algorithm.
    #[arg(long, value_enum, default_value_t = Algo::Ppo)]
    pub algo: Algo,
    /// Completions sampled per prompt [1 for ppo and reinforce; 4 for rloo, grpo and
    /// reinforce_baseline, which need at least 2].
    #[arg(long)]
    pub samples_per_prompt: Option<usize>,
    /// Longest prompt in tokens; longer ones lose tokens from the left.
    #[arg(long, default_value_t = 512)]
    pub max_prompt_len: usize,
    /// New tokens per completion (TRL's response_length).
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sampling temperature (> 0); log-probs are taken at the same temperature.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f64,
    /// Sample from the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Subtracted from the score of a completion that never emits EOS [none].
    #[arg(long)]
    pub missing_eos_penalty: Option<f64>,
    /// KL coefficient beta (the initial one with --target-kl).
    #[arg(long, default_value_t = 0.05)]
    pub kl_coef: f64,
    /// The per-token KL estimator.
    #[arg(long, value_enum, default_value_t = KlEstimator::K1)]
    pub kl_estimator: KlEstimator,
    /// Adaptive KL control (Ziegler et al. 2019): the per-completion KL to steer towards
    /// [none: fixed --kl-coef].
    #[arg(long)]
    pub target_kl: Option<f64>,
    /// Horizon of the adaptive KL controller, in completions.
    #[arg(long, default_value_t = 10000.0)]
    pub kl_horizon: f64,
    /// Clip scores to [-c, c] (after the EOS penalty and normalisation) [none].
    #[arg(long)]
    pub score_clip: Option<f64>,
    /// Normalise scores by running mean and standard deviation over all rollouts.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub normalize_scores: bool,
    /// Whiten the per-token rewards (scale only, as TRL); ppo only.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub whiten_rewards: bool,
    /// Discount gamma.
    #[arg(long, default_value_t = 1.0)]
    pub gamma: f64,
    /// GAE lambda.
    #[arg(long, default_value_t = 0.95)]
    pub lam: f64,
    /// Whiten advantages per rollout: true or false [true for ppo and the reinforce algos
    /// (false: mean only, OpenRLHF's no_advantage_std_norm), false for rloo; grpo's are
    /// group-normalised already].
    #[arg(long, value_name = "BOOL")]
    pub whiten_advantages: Option<bool>,
    /// Policy ratio clip epsilon (TRL GRPO's `epsilon`; the lower bound with --epsilon-high).
    #[arg(long, default_value_t = 0.2)]
    pub cliprange: f64,
    /// Upper clip epsilon, `1 + ε_high` (DAPO's clip-higher; 0.28 in the paper); with
    /// loss_type cispo the ratio's absolute cap [cliprange; 5.0 for cispo].
    #[arg(long)]
    pub epsilon_high: Option<f64>,
    /// GRPO's loss: grpo, dr_grpo, dapo, bnpo or cispo (TRL's names).
    #[arg(long, value_enum, default_value_t = LossType::Grpo)]
    pub loss_type: LossType,
    /// GRPO's ratio per token or per completion (GSPO): token or sequence.
    #[arg(long, value_enum, default_value_t = ImportanceSamplingLevel::Token)]
    pub importance_sampling_level: ImportanceSamplingLevel,
    /// GRPO's reward scaling after subtracting the group mean: group, batch or none.
    #[arg(long, value_enum, default_value_t = ScaleRewards::Group)]
    pub scale_rewards: ScaleRewards,
    /// Drop each prompt's group of samples whose scores are all equal before the update
    /// (DAPO's dynamic sampling, without resampling); the count is logged.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub dynamic_sampling: bool,
    /// Value clip around the rollout's values.
    #[arg(long, default_value_t = 0.2)]
    pub cliprange_value: f64,
    /// Weight of the value loss.
    #[arg(long, default_value_t = 0.1)]
    pub vf_coef: f64,
    /// Epochs over each rollout.
    #[arg(long, default_value_t = 4)]
    pub ppo_epochs: usize,
    /// Completions per optimizer step [the whole rollout: batch-size x grad-accum x samples].
    #[arg(long)]
    pub mini_batch_size: Option<usize>,
    /// Stop a rollout's updates once the approximate KL to the rollout policy exceeds this
    /// [none].
    #[arg(long)]
    pub early_stop_kl: Option<f64>,
    /// Value from a separate critic initialised from this reward model folder (trained too)
    /// instead of a head on the policy; ppo only [none: a value head on the policy].
    #[arg(long)]
    pub critic: Option<String>,
    /// Print and save (samples.jsonl) a few prompts, completions and rewards every N rollouts.
    #[arg(long, default_value_t = 10)]
    pub sample_every: usize,
    /// LoRA (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`); full training when unset.
    #[serde(flatten)]
    #[command(flatten)]
    pub lora: LoraConfig,
}

impl Default for PpoConfig {
    fn default() -> Self {
        lm::settings::defaults()
    }
}

mod check;
