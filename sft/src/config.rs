//! The SFT stage's own settings (the loop's are `train::TrainerConfig`). The field names are
//! the TOML keys and, with `-` for `_`, the `rudder sft` flags.
use crate::error::{Error, Result};
use lm::lora::{LoraConfig, LoraSpec};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// SFT settings; every field has a default so a TOML file lists only what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftConfig {
    /// Model to fine-tune: HF folder, hub id or `.gguf`. Required.
    pub model: Option<String>,
    /// Training rows, JSONL or a JSON array. Required.
    pub data: Option<PathBuf>,
    /// Evaluation rows (same formats); eval loss is logged every `eval_every` steps. Default none.
    pub eval_data: Option<PathBuf>,
    /// Tokenized rows longer than this are cut (the log counts them). Default 1024 (TRL's).
    pub max_seq_len: usize,
    /// Train on prompt / non-assistant tokens too. Default false: completion / assistant only.
    pub loss_on_all: bool,
    /// Pack several samples per row (best-fit decreasing, up to `max_seq_len` tokens) with a
    /// block-diagonal attention mask and positions restarting per sample. Default false.
    pub packing: bool,
    /// Count and skip bad rows instead of failing on the first one. Default false.
    pub skip_bad_rows: bool,
    /// LoRA (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`); full training when unset.
    #[serde(flatten)]
    pub lora: LoraConfig,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            model: None,
            data: None,
            eval_data: None,
            max_seq_len: 1024,
            loss_on_all: false,
            packing: false,
            skip_bad_rows: false,
            lora: LoraConfig::default(),
        }
    }
}

impl SftConfig {
    /// Checks every value; call before loading anything.
    pub fn validate(&self) -> Result<()> {
        if self.model.as_deref().is_none_or(str::is_empty) {
            return Err(Error::config("model", "required (--model)"));
        }
        if self.data.is_none() {
            return Err(Error::config("data", "required (--data)"));
        }
        if self.max_seq_len < 2 {
            return Err(Error::config("max_seq_len", "must be at least 2"));
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
