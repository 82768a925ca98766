//! The loop's configuration, shared by every stage.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{AdamWConfig, Error, Result, ScheduleKind};

/// Hyper-parameters and I/O settings of [`crate::run`], shared by every stage: the
/// `rudder sft|dpo|reward train|ppo` flags and the TOML keys (`-` for `_`). Every field has a
/// default (its `#[arg]`), so a TOML/JSON config only needs what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct TrainerConfig {
    /// Peak learning rate.
    #[arg(long, default_value_t = 5e-5)]
    pub learning_rate: f64,
    /// Examples per micro-batch (one forward/backward).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Passes over the data (ignored when --max-steps is set).
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Stop after this many optimizer steps (the data then cycles as needed) [none].
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    /// LR decay after warmup.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Cosine)]
    pub schedule: ScheduleKind,
    /// Final LR as a fraction of the peak.
    #[arg(long, default_value_t = 0.0)]
    pub min_lr_ratio: f64,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Comma-separated parameter-name substrings excluded from weight decay, e.g. bias,norm
    /// [none].
    #[arg(long, value_delimiter = ',')]
    pub no_decay: Vec<String>,
    /// AdamW betas (TOML only: `adam_betas = [0.9, 0.999]`).
    #[arg(skip = (0.9, 0.999))]
    pub adam_betas: (f64, f64),
    /// AdamW epsilon.
    #[arg(long, default_value_t = 1e-8)]
    pub adam_eps: f64,
    /// Global gradient-norm clip.
    #[arg(long, default_value = "1.0")]
    pub max_grad_norm: Option<f64>,
    /// Seed of shuffling and initialisation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Log a metrics.jsonl line every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Evaluate every N steps (and at the end) [none].
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Save a checkpoint every N steps and at the end; 0 = none at all, like TRL's
    /// save_strategy="no" (the trained model is still written; no --resume).
    #[arg(long, default_value = "500")]
    pub save_every: Option<usize>,
    /// Keep the newest K checkpoints.
    #[arg(long, default_value = "3")]
    pub save_total_limit: Option<usize>,
    /// Output folder: the model, checkpoints, metrics.jsonl, summary.json.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Continue from a checkpoint folder or a run folder's latest checkpoint [none].
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub quiet: bool,
    /// Recompute layer activations in the backward pass instead of keeping them
    /// (transformers' gradient_checkpointing, on by default in TRL): less memory for about one
    /// more forward pass of compute.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub gradient_checkpointing: bool,
    /// What a run costs: device power, grid intensity, price.
    #[serde(flatten)]
    #[command(flatten)]
    pub cost: cost::CostSettings,
    /// The model's shape and the stage, for FLOP counts; set by the caller that loaded the
    /// model (`rudder` does it for every stage), never read from a config file. Default none:
    /// FLOPs are not counted.
    #[serde(skip)]
    #[arg(skip)]
    pub flops: Option<cost::FlopModel>,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        lm::settings::defaults()
    }
}

impl TrainerConfig {
    /// The optimizer settings contained in this config.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.adam_betas.0,
            beta2: self.adam_betas.1,
            eps: self.adam_eps,
            weight_decay: self.weight_decay,
            no_decay: self.no_decay.clone(),
        }
    }

    /// Rejects values the loop cannot run with.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("batch_size", Some(self.batch_size)),
            ("grad_accum", Some(self.grad_accum)),
            ("log_every", Some(self.log_every)),
            ("eval_every", self.eval_every),
            ("save_total_limit", self.save_total_limit),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == Some(0)) {
            return Err(Error::Config(format!("{name} must be > 0")));
        }
        if self.max_steps.is_none() && self.epochs == 0 {
            return Err(Error::Config("epochs must be > 0 without max_steps".into()));
        }
        if let Some(n) = self.max_grad_norm.filter(|n| !(n.is_finite() && *n > 0.0)) {
            return Err(Error::Config(format!("max_grad_norm must be > 0, got {n}")));
        }
        self.validate_cost()
    }

    fn validate_cost(&self) -> Result<()> {
        let bad = |v: f64| !(v.is_finite() && v >= 0.0);
        let c = &self.cost;
        if let Some(w) = c.device_watts.filter(|w| bad(*w) || *w == 0.0) {
            return Err(Error::Config(format!("device_watts must be > 0, got {w}")));
        }
        if bad(c.grid_gco2_per_kwh) {
            let g = c.grid_gco2_per_kwh;
            return Err(Error::Config(format!(
                "grid_gco2_per_kwh must be >= 0, got {g}"
            )));
        }
        if let Some(p) = c.price_per_hour.filter(|p| bad(*p)) {
            return Err(Error::Config(format!(
                "price_per_hour must be >= 0, got {p}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_fields_and_validate() -> Result<()> {
        let cfg: TrainerConfig =
            serde_json::from_str(r#"{"learning_rate": 1e-4, "schedule": "linear"}"#)
                .map_err(|e| Error::Config(e.to_string()))?;
        assert_eq!(cfg.learning_rate, 1e-4);
        assert_eq!(cfg.schedule, ScheduleKind::Linear);
        assert_eq!(cfg.batch_size, 8);
        cfg.validate()?;
        let bad = TrainerConfig {
            grad_accum: 0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        assert!(serde_json::from_str::<TrainerConfig>(r#"{"lr": 1}"#).is_err());
        Ok(())
    }
}
