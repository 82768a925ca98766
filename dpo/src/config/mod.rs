//! The DPO stage's own settings (the loop's are `train::TrainerConfig`). The field names are
//! the TOML keys and, with `-` for `_`, the `rudder dpo` flags.
use crate::{Error, Result};
use lm::lora::LoraConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use train::StageSettings;

mod losses;
pub use losses::LossType;

/// What to do with the labeling export's ties (`"tie": true`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Ties {
    /// Leave tied pairs out (logged). Default.
    #[default]
    Drop,
    /// Train on them with soft label 0.5: `½ L(chosen ≻ rejected) + ½ L(rejected ≻ chosen)`.
    Soft,
}

/// DPO settings: the `rudder dpo` flags and the TOML keys; every field has a default (its
/// `#[arg]`) so a TOML file lists only what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct DpoConfig {
    /// Policy to train: HF folder, hub id or .gguf (required, here or in --config).
    #[arg(long)]
    pub model: Option<String>,
    /// Frozen reference model [the starting policy; with LoRA its base, the adapter switched
    /// off: no second copy].
    #[arg(id = "ref", long = "ref", value_name = "MODEL")]
    #[serde(rename = "ref")]
    pub ref_model: Option<String>,
    /// Preference pairs, JSONL or a JSON array: {"prompt","chosen","rejected"} or
    /// {"chosen","rejected"} (strings or message lists), the labeling export (+"votes",
    /// "agreement", "tie"), or LLaMA-Factory {"conversations","chosen","rejected"} (required).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluation pairs in the same formats; evaluated before training, every --eval-every
    /// steps and at the end [none].
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// The preference loss; several, comma-separated, are summed (TRL's loss_type list; MPO is
    /// sigmoid,bco_pair,sft with --loss-weights 0.8,0.2,1.0).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sigmoid")]
    #[serde(deserialize_with = "losses::one_or_many")]
    pub loss: Vec<LossType>,
    /// Weight of each --loss, comma-separated, one per loss (TRL's loss_weights) [1 each].
    #[arg(long, value_delimiter = ',', value_name = "W")]
    pub loss_weights: Vec<f64>,
    /// Beta, the strength of the implicit KL penalty (TRL's 0.1; SimPO papers use 2.0).
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// Assumed label-noise rate in [0, 0.5) for sigmoid (conservative DPO), robust, simpo, aot
    /// and aot_unpaired; exo_pair's ε (> 0 there; the EXO paper uses 1e-3).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// SimPO target margin gamma (TRL's simpo_gamma).
    #[arg(long, default_value_t = 0.5)]
    pub gamma: f64,
    /// DiscoPOP temperature τ (TRL's discopop_tau).
    #[arg(long, default_value_t = 0.05)]
    pub discopop_tau: f64,
    /// Weight of an NLL term on the chosen completions (RPO), token-weighted over the batch;
    /// 0 is off (the same term as `--loss sigmoid,sft --loss-weights 1,A`).
    #[arg(long, default_value_t = 0.0)]
    pub rpo_alpha: f64,
    /// Ties from the labeling export ("tie": true).
    #[arg(long, value_enum, default_value_t = Ties::Drop)]
    pub ties: Ties,
    /// Compute the reference log-probs once before training (cached in --out) and free the
    /// reference model.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub precompute_ref: bool,
    /// Longest prompt+completion in tokens; longer pairs lose prompt tokens from the left
    /// (TRL's max_length).
    #[arg(long, default_value_t = 1024)]
    pub max_seq_len: usize,
    /// Drop pairs longer than --max-seq-len instead of truncating them.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub drop_long: bool,
    /// Count and skip bad rows instead of stopping at the first.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub skip_bad_rows: bool,
    /// LoRA (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`); full training when unset.
    #[serde(flatten)]
    #[command(flatten)]
    pub lora: LoraConfig,
}

impl Default for DpoConfig {
    fn default() -> Self {
        lm::settings::defaults()
    }
}

impl DpoConfig {
    /// Checks every value; call before loading anything.
    pub fn validate(&self) -> Result<()> {
        self.require_inputs()?;
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(Error::setting(
                "dpo",
                "beta",
                format!("must be > 0, got {}", self.beta),
            ));
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return Err(Error::setting(
                "dpo",
                "label_smoothing",
                format!("must be in [0, 0.5), got {}", self.label_smoothing),
            ));
        }
        self.validate_losses()?;
        if !self.gamma.is_finite() {
            return Err(Error::setting("dpo", "gamma", "must be finite"));
        }
        if !(self.rpo_alpha.is_finite() && self.rpo_alpha >= 0.0) {
            return Err(Error::setting(
                "dpo",
                "rpo_alpha",
                format!("must be >= 0, got {}", self.rpo_alpha),
            ));
        }
        if self.max_seq_len < 2 {
            return Err(Error::setting("dpo", "max_seq_len", "must be at least 2"));
        }
        if self.uses_reference() && self.ref_model.as_deref() == Some("") {
            return Err(Error::setting("dpo", "ref", "empty model spec"));
        }
        self.lora()?;
        Ok(())
    }
}

impl train::StageSettings for DpoConfig {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_bad_values_name_the_field() {
        let cfg: DpoConfig =
            serde_json::from_str(r#"{"model": "m", "data": "d.jsonl", "loss": "ipo", "ref": "r"}"#)
                .unwrap_or_default();
        assert_eq!(
            (cfg.loss.clone(), cfg.beta, cfg.ref_model.as_deref()),
            (vec![LossType::Ipo], 0.1, Some("r"))
        );
        assert!(cfg.validate().is_ok());
        let bad = |c: DpoConfig| {
            c.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad(DpoConfig {
            beta: 0.0,
            ..cfg.clone()
        })
        .contains("`beta`"));
        assert!(bad(DpoConfig {
            label_smoothing: 0.1,
            ..cfg.clone()
        })
        .contains("`label_smoothing`"));
        assert!(bad(DpoConfig {
            label_smoothing: 0.5,
            loss: vec![LossType::Robust],
            ..cfg.clone()
        })
        .contains("[0, 0.5)"));
        assert!(bad(DpoConfig {
            model: None,
            ..cfg.clone()
        })
        .contains("`model`"));
        assert!(bad(DpoConfig {
            lora: LoraConfig {
                lora_r: Some(0),
                ..Default::default()
            },
            ..cfg
        })
        .contains("`lora_r`"));
        assert!(serde_json::from_str::<DpoConfig>(r#"{"betta": 1}"#).is_err());
        let lora: DpoConfig = serde_json::from_str(r#"{"lora_r": 4, "beta": 0.2}"#).unwrap();
        assert_eq!((lora.lora.lora_r, lora.beta), (Some(4), 0.2));
        assert!(serde_json::from_str::<DpoConfig>(r#"{"loss": "kto"}"#).is_err());
    }
}
