//! The loop's configuration, shared by every stage.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{AdamWConfig, Error, Result, ScheduleKind};

/// Hyper-parameters and I/O settings of [`crate::run`]. Every field has a default,
/// so a TOML/JSON config only needs what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainerConfig {
    /// Peak learning rate. Default 5e-5.
    pub learning_rate: f64,
    /// Examples per micro-batch (one forward/backward). Default 8.
    pub batch_size: usize,
    /// Micro-batches per optimizer step. Default 1.
    pub grad_accum: usize,
    /// Passes over the data (ignored when `max_steps` is set). Default 1.
    pub epochs: usize,
    /// Fixed number of optimizer steps; the data then cycles as needed. Default none.
    pub max_steps: Option<usize>,
    /// Linear warmup steps. Default 0.
    pub warmup_steps: usize,
    /// Decay after warmup: `constant`, `linear` or `cosine`. Default `cosine`.
    pub schedule: ScheduleKind,
    /// Final lr as a fraction of `learning_rate`. Default 0.0.
    pub min_lr_ratio: f64,
    /// AdamW decoupled weight decay. Default 0.0.
    pub weight_decay: f64,
    /// Parameter-name substrings excluded from weight decay, e.g. `["bias", "norm"]`.
    /// Default empty.
    pub no_decay: Vec<String>,
    /// AdamW betas. Default (0.9, 0.999).
    pub adam_betas: (f64, f64),
    /// AdamW epsilon. Default 1e-8.
    pub adam_eps: f64,
    /// Global gradient-norm clip; `None` disables clipping. Default 1.0.
    pub max_grad_norm: Option<f64>,
    /// Seed of the data shuffle. Default 42.
    pub seed: u64,
    /// Write a `metrics.jsonl` line every this many steps. Default 10.
    pub log_every: usize,
    /// Run `Stage::evaluate` every this many steps (and at the end). Default none.
    pub eval_every: Option<usize>,
    /// Save a checkpoint every this many steps, and one at the end; 0 saves none, not even
    /// at the end (TRL's `save_strategy="no"`: the stage still writes the trained model, but
    /// the run cannot be resumed). Default 500.
    pub save_every: Option<usize>,
    /// Keep only the newest this many checkpoints. Default 3.
    pub save_total_limit: Option<usize>,
    /// Run folder: checkpoints, `metrics.jsonl`, `summary.json`. Default `out`.
    pub out: PathBuf,
    /// Resume from a checkpoint folder, or from the latest checkpoint in a run
    /// folder. Default none.
    pub resume: Option<PathBuf>,
    /// Hide the progress bar. Default false.
    pub quiet: bool,
    /// Activation checkpointing of the trained model (transformers' `gradient_checkpointing`,
    /// on by default in TRL's trainers): layer activations are recomputed in the backward
    /// pass instead of kept, for about one more forward pass of compute. Default true.
    pub gradient_checkpointing: bool,
    /// Device power at full use, W, for the energy estimate when no counter (RAPL, NVML) can
    /// be read. Default: 5 W per CPU thread, or the GPU class's TDP.
    pub device_watts: Option<f64>,
    /// Grid carbon intensity for CO2-eq, g/kWh. Default 481 (2023 world average, Ember).
    pub grid_gco2_per_kwh: f64,
    /// Machine price per hour (any currency) for the cost block. Default none.
    pub price_per_hour: Option<f64>,
    /// The model's shape and the stage, for FLOP counts; set by the caller that loaded the
    /// model (`rudder` does it for every stage), never read from a config file. Default none:
    /// FLOPs are not counted.
    #[serde(skip)]
    pub flops: Option<crate::cost::FlopModel>,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            learning_rate: 5e-5,
            batch_size: 8,
            grad_accum: 1,
            epochs: 1,
            max_steps: None,
            warmup_steps: 0,
            schedule: ScheduleKind::Cosine,
            min_lr_ratio: 0.0,
            weight_decay: 0.0,
            no_decay: Vec::new(),
            adam_betas: (0.9, 0.999),
            adam_eps: 1e-8,
            max_grad_norm: Some(1.0),
            seed: 42,
            log_every: 10,
            eval_every: None,
            save_every: Some(500),
            save_total_limit: Some(3),
            out: PathBuf::from("out"),
            resume: None,
            quiet: false,
            gradient_checkpointing: true,
            device_watts: None,
            grid_gco2_per_kwh: crate::cost::WORLD_GCO2_PER_KWH,
            price_per_hour: None,
            flops: None,
        }
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
        if let Some(w) = self.device_watts.filter(|w| bad(*w) || *w == 0.0) {
            return Err(Error::Config(format!("device_watts must be > 0, got {w}")));
        }
        if bad(self.grid_gco2_per_kwh) {
            let g = self.grid_gco2_per_kwh;
            return Err(Error::Config(format!(
                "grid_gco2_per_kwh must be >= 0, got {g}"
            )));
        }
        if let Some(p) = self.price_per_hour.filter(|p| bad(*p)) {
            return Err(Error::Config(format!(
                "price_per_hour must be >= 0, got {p}"
            )));
        }
        Ok(())
    }

    /// The cost settings contained in this config.
    pub fn cost_settings(&self) -> crate::cost::CostSettings {
        crate::cost::CostSettings {
            device_watts: self.device_watts,
            grid_gco2_per_kwh: self.grid_gco2_per_kwh,
            price_per_hour: self.price_per_hour,
        }
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
