//! The KTO stage's own settings (the loop's are `train::TrainerConfig`). The field names are
//! the TOML keys and, with `-` for `_`, the `rudder kto` flags; the names and defaults are TRL
//! 1.16's `KTOConfig`'s.
use crate::{Error, Result};
use lm::lora::LoraConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use train::StageSettings;

/// The loss (`--loss`; TRL's `loss_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum KtoLoss {
    /// KTO (Eq. 7 of the paper): desirable `1 - σ(β(r - z))`, undesirable `1 - σ(β(z - r))`,
    /// r = policy/reference log-ratio, z = the batch's KL estimate from mismatched pairs.
    #[default]
    Kto,
    /// Unpaired APO-zero: desirable `1 - σ(β r)`, undesirable `σ(β r)` (no KL estimate, no
    /// mismatched rows).
    ApoZeroUnpaired,
}

impl KtoLoss {
    /// Whether the loss reads the KL estimate (and so needs the mismatched rows).
    pub fn uses_kl(self) -> bool {
        self == KtoLoss::Kto
    }
}

/// KTO settings: the `rudder kto` flags and the TOML keys; every field has a default (its
/// `#[arg]`) so a TOML file lists only what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct KtoConfig {
    /// Policy to train: HF folder, hub id or .gguf (required, here or in --config).
    #[arg(long)]
    pub model: Option<String>,
    /// Frozen reference model [the starting policy; with LoRA its base, the adapter switched
    /// off: no second copy].
    #[arg(id = "ref", long = "ref", value_name = "MODEL")]
    #[serde(rename = "ref")]
    pub ref_model: Option<String>,
    /// Unpaired rows, JSONL or a JSON array: {"prompt","completion","label": true|false}
    /// (strings or message lists); or any preference-pair file `rudder dpo` reads, each pair
    /// split into a desirable and an undesirable row as TRL does (required).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluation rows in the same formats; evaluated before training, every --eval-every steps
    /// and at the end [none].
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// The loss (TRL's loss_type).
    #[arg(long, value_enum, default_value_t = KtoLoss::Kto)]
    pub loss: KtoLoss,
    /// Beta, the strength of the implicit KL penalty (TRL's 0.1).
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// Weight of the desirable rows' losses (> 0; TRL's desirable_weight).
    #[arg(long, default_value_t = 1.0)]
    pub desirable_weight: f64,
    /// Weight of the undesirable rows' losses (> 0; TRL's undesirable_weight).
    #[arg(long, default_value_t = 1.0)]
    pub undesirable_weight: f64,
    /// Compute the reference log-probs (matched and mismatched rows) once before training and
    /// free the reference model.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub precompute_ref: bool,
    /// Longest prompt+completion in tokens, cut from the right; rows whose prompt alone fills it
    /// are dropped (TRL's max_length).
    #[arg(long, default_value_t = 1024)]
    pub max_seq_len: usize,
    /// Count and skip bad rows instead of stopping at the first.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub skip_bad_rows: bool,
    /// LoRA (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`); full training when unset.
    #[serde(flatten)]
    #[command(flatten)]
    pub lora: LoraConfig,
}

impl Default for KtoConfig {
    fn default() -> Self {
        lm::settings::defaults()
    }
}

fn positive(field: &str, x: f64) -> Result<()> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(Error::setting(
            "kto",
            field,
            format!("must be > 0, got {x}"),
        ))
    }
}

impl KtoConfig {
    /// Checks every value; call before loading anything.
    pub fn validate(&self) -> Result<()> {
        self.require_inputs()?;
        positive("beta", self.beta)?;
        positive("desirable_weight", self.desirable_weight)?;
        positive("undesirable_weight", self.undesirable_weight)?;
        if self.max_seq_len < 2 {
            return Err(Error::setting("kto", "max_seq_len", "must be at least 2"));
        }
        if self.ref_model.as_deref() == Some("") {
            return Err(Error::setting("kto", "ref", "empty model spec"));
        }
        self.lora()?;
        Ok(())
    }

    /// The loop settings KTO needs: with the KL estimate a micro-batch of one row would pair a
    /// prompt with its own completion (TRL refuses it too).
    pub fn validate_trainer(&self, trainer: &train::TrainerConfig) -> Result<()> {
        if self.loss.uses_kl() && trainer.batch_size < 2 {
            return Err(Error::setting(
                "kto",
                "batch_size",
                format!(
                    "must be at least 2 with --loss kto (the KL estimate pairs each prompt with \
                     another row's completion), got {}",
                    trainer.batch_size
                ),
            ));
        }
        Ok(())
    }
}

impl train::StageSettings for KtoConfig {
    const FILES: train::RunFiles = crate::run::FILES;
    const REQUIRED: &'static [&'static str] = &["model", "data"];
    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
    fn inputs(&self) -> Vec<train::Input<'_>> {
        let models = [
            ("model", self.model.as_deref()),
            ("ref", self.ref_model.as_deref()),
        ];
        let files = [
            ("data", self.data.as_deref()),
            ("eval_data", self.eval_data.as_deref()),
        ];
        train::inputs::set(&models, &files)
    }
    fn lora_settings(&self) -> &LoraConfig {
        &self.lora
    }
}
