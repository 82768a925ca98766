//! The reward stage's own settings (the loop's are `train::TrainerConfig`). Same names in the
//! `--config` TOML table and as `rudder reward train` flags.
use crate::error::{Error, Result};
use lm::lora::{LoraConfig, LoraSpec};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Reward-model training settings; every field has a default, so a TOML file only lists what it
/// changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardConfig {
    /// Backbone to start from: folder, hub id or GGUF (usually the SFT output). Required.
    pub model: Option<String>,
    /// Training pairs (JSONL or JSON array; TRL, labeling-export or LLaMA-Factory rows). Required.
    pub data: Option<PathBuf>,
    /// Evaluation pairs, same formats. Default none (no evaluation).
    pub eval_data: Option<PathBuf>,
    /// Longest `prompt + completion` in tokens; longer pairs lose prompt tokens from the left
    /// (then completion tokens from the right) and are counted. Default 1024 (TRL's `max_length`).
    pub max_seq_len: Option<usize>,
    /// Drop pairs longer than `max_seq_len` instead of truncating them. Default false.
    pub drop_long: bool,
    /// Skip (and report) rows that fail to parse, e.g. chosen == rejected. Default false.
    pub skip_bad_rows: bool,
    /// Subtract the row's `margin` inside the sigmoid when the data has one. Default true.
    pub use_margin: bool,
    /// TRL's `center_rewards_coefficient`: adds `coef · mean((r_c + r_r)²)`. Default none.
    pub center_rewards_coefficient: Option<f64>,
    /// Seed of the score head's normal(0, initializer_range) init. Default 42.
    pub head_seed: u64,
    /// Pairs per forward pass during evaluation. Default 8.
    pub eval_batch_size: usize,
    /// Keep the pairs of one `group` (e.g. all pairs of one ranking from `rudder label export`)
    /// together: each group is one training example, so `batch_size` counts groups and a
    /// ranking's K(K-1)/2 pairs share a batch (InstructGPT's scheme against overfitting on
    /// correlated pairs). Pairs without a group are groups of one. Default false.
    pub group_pairs: bool,
    /// LoRA (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`); full training when unset.
    #[serde(flatten)]
    pub lora: LoraConfig,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            model: None,
            data: None,
            eval_data: None,
            max_seq_len: Some(1024),
            drop_long: false,
            skip_bad_rows: false,
            use_margin: true,
            center_rewards_coefficient: None,
            head_seed: 42,
            eval_batch_size: 8,
            group_pairs: false,
            lora: LoraConfig::default(),
        }
    }
}

impl RewardConfig {
    /// Rejects settings that cannot work, before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        if self.model.as_deref().is_none_or(str::is_empty) {
            return Err(Error::config(
                "model",
                "required (a folder, hub id or .gguf)",
            ));
        }
        if self.data.is_none() {
            return Err(Error::config("data", "required (a preference JSONL file)"));
        }
        if self.max_seq_len == Some(0) {
            return Err(Error::config("max_seq_len", "must be > 0"));
        }
        if self.drop_long && self.max_seq_len.is_none() {
            return Err(Error::config("drop_long", "needs max_seq_len"));
        }
        if self.eval_batch_size == 0 {
            return Err(Error::config("eval_batch_size", "must be > 0"));
        }
        if let Some(c) = self
            .center_rewards_coefficient
            .filter(|c| !(c.is_finite() && *c >= 0.0))
        {
            return Err(Error::config(
                "center_rewards_coefficient",
                format!("must be >= 0, got {c}"),
            ));
        }
        self.lora()?;
        Ok(())
    }

    /// The LoRA spec when `lora_r` is set.
    pub fn lora(&self) -> Result<Option<LoraSpec>> {
        self.lora
            .spec()
            .map_err(|(field, reason)| Error::config(field, reason))
    }
}
