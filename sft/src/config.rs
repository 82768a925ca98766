//! The SFT stage's own settings (the loop's are `train::TrainerConfig`). The field names are
//! the TOML keys and, with `-` for `_`, the `rudder sft` flags.
use crate::error::{Error, Result};
use lm::lora::LoraSpec;
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
    /// LoRA rank; unset means full fine-tuning. Default none.
    pub lora_r: Option<usize>,
    /// LoRA scale numerator (update = alpha / r · B A). Default 16.
    pub lora_alpha: f64,
    /// Dropout on the LoRA input. Default 0 (PEFT's default); only 0 is supported so far.
    pub lora_dropout: f64,
    /// Projections that get adapters (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
    /// down_proj, or all-linear). Default q_proj, v_proj (PEFT's default for Llama/Qwen).
    pub lora_targets: Vec<String>,
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
            lora_r: None,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            lora_targets: vec!["q_proj".into(), "v_proj".into()],
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
        if let Some(spec) = self.lora()? {
            spec.modules()
                .map_err(|e| Error::config("lora_targets", e.to_string()))?;
        }
        Ok(())
    }

    /// The LoRA spec when `lora_r` is set.
    pub fn lora(&self) -> Result<Option<LoraSpec>> {
        let Some(r) = self.lora_r else {
            return Ok(None);
        };
        if r == 0 {
            return Err(Error::config("lora_r", "must be > 0"));
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return Err(Error::config("lora_alpha", "must be > 0"));
        }
        if self.lora_dropout != 0.0 {
            // lm::linear applies adapters without dropout; refusing beats silently ignoring it.
            return Err(Error::config("lora_dropout", "only 0 is supported so far"));
        }
        Ok(Some(LoraSpec {
            r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            targets: self.lora_targets.clone(),
            rslora: false,
        }))
    }
}
