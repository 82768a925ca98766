//! The reward stage's own settings (the loop's are `train::TrainerConfig`). Same names in the
//! `--config` TOML table and as `rudder reward train` flags.
use crate::{Error, Result};
use lm::lora::LoraConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use train::StageSettings;

/// Reward-model training settings: the `rudder reward train` flags and the TOML keys; every
/// field has a default (its `#[arg]`), so a TOML file only lists what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct RewardConfig {
    /// Backbone: HF folder, hub id or .gguf, usually the SFT output (required, here or in
    /// --config).
    #[arg(long)]
    pub model: Option<String>,
    /// Preference pairs, JSONL or JSON array: TRL, labeling-export or LLaMA-Factory rows
    /// (required).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Held-out pairs: accuracy, margin, reward stats (and by agreement) at --eval-every and the
    /// end [none].
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Longest prompt+completion in tokens; longer pairs lose prompt tokens from the left (then
    /// completion tokens from the right) and are counted (TRL's max_length).
    #[arg(long, default_value = "1024")]
    pub max_seq_len: Option<usize>,
    /// Drop pairs longer than --max-seq-len instead of truncating them.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub drop_long: bool,
    /// Count and skip bad rows (identical chosen/rejected, missing fields) instead of stopping
    /// at the first.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub skip_bad_rows: bool,
    /// Subtract the row's "margin" inside the sigmoid when the data has one, as TRL.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub use_margin: bool,
    /// TRL's center_rewards_coefficient: adds coef * mean((r_c + r_r)^2) [none].
    #[arg(long)]
    pub center_rewards_coefficient: Option<f64>,
    /// Seed of the score head's normal(0, initializer_range) init.
    #[arg(long, default_value_t = 42)]
    pub head_seed: u64,
    /// Pairs per forward pass when evaluating.
    #[arg(long, default_value_t = 8)]
    pub eval_batch_size: usize,
    /// Keep each ranking's pairs (rows sharing a "group", as `rudder label export` writes them)
    /// in one batch element: --batch-size then counts rankings, and a ranking's K(K-1)/2 pairs
    /// share a batch (InstructGPT's scheme against overfitting on correlated pairs).
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub group_pairs: bool,
    /// LoRA (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`); full training when unset.
    #[serde(flatten)]
    #[command(flatten)]
    pub lora: LoraConfig,
}

impl Default for RewardConfig {
    fn default() -> Self {
        lm::settings::defaults()
    }
}

impl RewardConfig {
    /// Rejects settings that cannot work, before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        self.require_inputs()?;
        if self.max_seq_len == Some(0) {
            return Err(Error::setting("reward", "max_seq_len", "must be > 0"));
        }
        if self.drop_long && self.max_seq_len.is_none() {
            return Err(Error::setting("reward", "drop_long", "needs max_seq_len"));
        }
        if self.eval_batch_size == 0 {
            return Err(Error::setting("reward", "eval_batch_size", "must be > 0"));
        }
        if let Some(c) = self
            .center_rewards_coefficient
            .filter(|c| !(c.is_finite() && *c >= 0.0))
        {
            return Err(Error::setting(
                "reward",
                "center_rewards_coefficient",
                format!("must be >= 0, got {c}"),
            ));
        }
        self.lora()?;
        Ok(())
    }
}

impl train::StageSettings for RewardConfig {
    const FILES: train::RunFiles = crate::run::FILES;
    const REQUIRED: &'static [&'static str] = &["model", "data"];
    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
    fn inputs(&self) -> Vec<train::Input<'_>> {
        let files = [
            ("data", self.data.as_deref()),
            ("eval_data", self.eval_data.as_deref()),
        ];
        train::inputs::set(&[("model", self.model.as_deref())], &files)
    }
    fn lora_settings(&self) -> &LoraConfig {
        &self.lora
    }
}
