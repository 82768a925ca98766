//! The SFT stage's own settings (the loop's are `train::TrainerConfig`). The field names are
//! the TOML keys and, with `-` for `_`, the `rudder sft` flags.
use crate::{Error, Result};
use lm::lora::LoraConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use train::StageSettings;

/// SFT settings: the `rudder sft` flags and the TOML keys; every field has a default (its
/// `#[arg]`) so a TOML file lists only what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct SftConfig {
    /// Model to fine-tune: HF folder, hub id or .gguf (required, here or in --config).
    #[arg(long)]
    pub model: Option<String>,
    /// Training rows, JSONL or a JSON array: {"text"}, {"prompt","completion"} (strings or
    /// message lists), {"messages":[{"role","content"}..]}, ShareGPT {"conversations"}, or
    /// Alpaca {"instruction","input","output"} (required).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluation rows in the same formats; eval loss every --eval-every steps [none].
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Cut tokenized rows to this many tokens; the log counts truncated rows (TRL's 1024).
    #[arg(long, default_value_t = 1024)]
    pub max_seq_len: usize,
    /// Train on prompt / non-assistant tokens too (off: completion / assistant tokens only).
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub loss_on_all: bool,
    /// Pack several samples per row (best-fit decreasing, up to --max-seq-len tokens): no
    /// attention across samples, positions restart per sample.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub packing: bool,
    /// Count and skip bad rows instead of stopping at the first.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub skip_bad_rows: bool,
    /// LoRA (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`); full training when unset.
    #[serde(flatten)]
    #[command(flatten)]
    pub lora: LoraConfig,
}

impl Default for SftConfig {
    fn default() -> Self {
        lm::settings::defaults()
    }
}

impl SftConfig {
    /// Checks every value; call before loading anything.
    pub fn validate(&self) -> Result<()> {
        self.require_inputs()?;
        if self.max_seq_len < 2 {
            return Err(Error::setting("sft", "max_seq_len", "must be at least 2"));
        }
        self.lora()?;
        Ok(())
    }
}

impl train::StageSettings for SftConfig {
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
