//! The flags every trainer shares (SFT, reward, DPO, PPO), one spelling everywhere, and the
//! `--config FILE.toml` that holds the same names. Precedence: flag > TOML > default.
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use train::TrainerConfig;

/// Trainer flags; each overrides the TOML field of the same name (defaults in brackets).
#[derive(Args, Debug, Clone, Default)]
pub struct TrainFlags {
    /// TOML file with any trainer or stage field (same names as the flags, with `_`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output folder: the model, checkpoints, metrics.jsonl, summary.json [out].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Peak learning rate [5e-5].
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Examples per micro-batch [8].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step [1].
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Passes over the data [1].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps (overrides epochs) [none].
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Linear warmup steps [0].
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// LR decay after warmup: constant, linear, cosine [cosine].
    #[arg(long)]
    pub schedule: Option<String>,
    /// Final LR as a fraction of the peak [0].
    #[arg(long)]
    pub min_lr_ratio: Option<f64>,
    /// AdamW decoupled weight decay [0].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Global gradient-norm clip [1.0].
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// Seed of shuffling and initialisation [42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Log a metrics line every N steps [10].
    #[arg(long)]
    pub log_every: Option<usize>,
    /// Evaluate every N steps (and at the end) [none].
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Save a checkpoint every N steps and at the end; 0 = none at all, like TRL's
    /// save_strategy="no" (the trained model is still written; no --resume) [500].
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Keep the newest K checkpoints [3].
    #[arg(long)]
    pub save_total_limit: Option<usize>,
    /// Continue from a checkpoint folder or a run folder's latest checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Recompute layer activations in the backward pass instead of keeping them: less
    /// memory for about one more forward pass, as TRL's default [true].
    #[arg(long, value_name = "BOOL")]
    pub gradient_checkpointing: Option<bool>,
    #[command(flatten)]
    pub cost: CostFlags,
}

/// What a run costs: energy estimate, grid intensity, price (`train::cost`; every trainer,
/// `generate` and `estimate`).
#[derive(Args, Debug, Clone, Default)]
pub struct CostFlags {
    /// Device power at full use, W, for the energy estimate when no counter (RAPL, NVML) can be
    /// read [5 W per CPU thread, or the GPU class's TDP].
    #[arg(long)]
    pub device_watts: Option<f64>,
    /// Grid carbon intensity, gCO2-eq/kWh [481: 2023 world average, Ember].
    #[arg(long)]
    pub grid_gco2_per_kwh: Option<f64>,
    /// Machine price per hour (any currency), for the cost line [none].
    #[arg(long)]
    pub price_per_hour: Option<f64>,
}

impl CostFlags {
    /// The settings, defaults filled in.
    pub fn settings(&self) -> train::cost::CostSettings {
        train::cost::CostSettings {
            device_watts: self.device_watts,
            grid_gco2_per_kwh: self
                .grid_gco2_per_kwh
                .unwrap_or(train::cost::WORLD_GCO2_PER_KWH),
            price_per_hour: self.price_per_hour,
        }
    }
}

/// Resolves the trainer config and the stage config `S` from `--config` (one flat TOML table
/// with both kinds of keys), the shared flags and the stage's own flags (`stage_flags`
/// serialises to an object; null and `false` mean "not given"). Unknown keys are errors that
/// name the file, the stage and the key.
pub fn resolve<S: DeserializeOwned + Default + serde::Serialize>(
    flags: &TrainFlags,
    stage_flags: &impl serde::Serialize,
    stage_name: &str,
) -> Result<(TrainerConfig, S)> {
    let table = match &flags.config {
        Some(p) => read_table(p)?,
        None => toml::Table::new(),
    };
    let file = flags
        .config
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "flags".into());
    let trainer_keys = keys_of(&TrainerConfig::default())?;
    let stage_keys = keys_of(&S::default())?;
    let (mut t, mut s) = (serde_json::Map::new(), serde_json::Map::new());
    for (k, v) in table {
        let v = serde_json::to_value(v)?;
        if trainer_keys.contains(&k) {
            t.insert(k, v);
        } else if stage_keys.contains(&k) {
            s.insert(k, v);
        } else {
            bail!("{file}: [{stage_name}] field `{k}`: unknown field");
        }
    }
    if let serde_json::Value::Object(o) = serde_json::to_value(stage_flags)? {
        for (k, v) in o {
            if !(v.is_null() || v == serde_json::Value::Bool(false)) {
                s.insert(k, v);
            }
        }
    }
    let model = s.get("model").and_then(|m| m.as_str()).map(String::from);
    let mut trainer: TrainerConfig = from_map(t, &file, stage_name)?;
    apply(flags, &mut trainer)?;
    trainer.flops = model.and_then(|m| crate::estimate::flop_model(&m, stage_name));
    trainer
        .validate()
        .with_context(|| format!("[{stage_name}] config"))?;
    let stage: S = from_map(s, &file, stage_name)?;
    Ok((trainer, stage))
}

/// serde names no field in a type error ("invalid type: string, expected u64"), so on failure
/// each key is tried alone (every config field has a default) to find the one to name.
fn from_map<T: DeserializeOwned>(
    m: serde_json::Map<String, serde_json::Value>,
    file: &str,
    stage: &str,
) -> Result<T> {
    serde_json::from_value(m.clone().into()).map_err(|e| {
        let bad = m.iter().find(|(k, v)| {
            let one = serde_json::Map::from_iter([((*k).clone(), (*v).clone())]);
            serde_json::from_value::<T>(one.into()).is_err()
        });
        match bad {
            Some((k, _)) => anyhow::anyhow!("{file}: [{stage}] field `{k}`: {e}"),
            None => anyhow::anyhow!("{file}: [{stage}] {e}"),
        }
    })
}

fn read_table(p: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    text.parse::<toml::Table>()
        .with_context(|| format!("{}: invalid TOML", p.display()))
}

fn keys_of<T: serde::Serialize>(v: &T) -> Result<Vec<String>> {
    let j = serde_json::to_value(v)?;
    Ok(j.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default())
}

fn apply(f: &TrainFlags, c: &mut TrainerConfig) -> Result<()> {
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = f.$field.clone() { c.$field = v.into(); } )* };
    }
    set!(
        out,
        learning_rate,
        batch_size,
        grad_accum,
        epochs,
        warmup_steps,
        min_lr_ratio,
        weight_decay,
        seed,
        log_every,
        gradient_checkpointing
    );
    if f.max_steps.is_some() {
        c.max_steps = f.max_steps;
    }
    if f.max_grad_norm.is_some() {
        c.max_grad_norm = f.max_grad_norm;
    }
    if f.eval_every.is_some() {
        c.eval_every = f.eval_every;
    }
    if f.save_every.is_some() {
        c.save_every = f.save_every;
    }
    if f.save_total_limit.is_some() {
        c.save_total_limit = f.save_total_limit;
    }
    if f.resume.is_some() {
        c.resume = f.resume.clone();
    }
    let cost = &f.cost;
    c.device_watts = cost.device_watts.or(c.device_watts);
    c.price_per_hour = cost.price_per_hour.or(c.price_per_hour);
    c.grid_gco2_per_kwh = cost.grid_gco2_per_kwh.unwrap_or(c.grid_gco2_per_kwh);
    if let Some(s) = &f.schedule {
        c.schedule = serde_json::from_value(serde_json::Value::String(s.clone()))
            .with_context(|| format!("--schedule `{s}`: not one of constant, linear, cosine"))?;
    }
    c.quiet |= f.quiet;
    Ok(())
}

/// LoRA flags shared by every trainer (`lm::lora::LoraConfig` fields; defaults in brackets).
#[derive(Args, Debug, Clone, Default, serde::Serialize)]
pub struct LoraFlags {
    /// LoRA rank; without it the whole model is trained [none: full training].
    #[arg(long)]
    pub lora_r: Option<usize>,
    /// LoRA alpha; the update is scaled by alpha / r [16].
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// Dropout probability on the adapters' input while training, in [0, 1) (not in PPO) [0].
    #[arg(long)]
    pub lora_dropout: Option<f64>,
    /// Comma-separated projections to adapt: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,
    /// down_proj or all-linear [q_proj,v_proj].
    #[arg(long, value_delimiter = ',')]
    pub lora_targets: Option<Vec<String>>,
}

/// Writes `<out>/<stage_name>.toml`: every resolved trainer and stage field, reusable as
/// `--config` (the run's record of what it actually used).
pub fn write_resolved(
    stage_name: &str,
    trainer: &TrainerConfig,
    stage: &impl serde::Serialize,
) -> Result<()> {
    let mut table = serde_json::Map::new();
    for v in [serde_json::to_value(trainer)?, serde_json::to_value(stage)?] {
        if let serde_json::Value::Object(o) = v {
            // TOML has no null: an unset optional field is left out; resuming is per run.
            table.extend(o.into_iter().filter(|(k, v)| !v.is_null() && k != "resume"));
        }
    }
    let toml: toml::Value = serde_json::from_value(serde_json::Value::Object(table))?;
    let path = trainer.out.join(format!("{stage_name}.toml"));
    std::fs::write(&path, toml::to_string_pretty(&toml)?)
        .with_context(|| format!("writing {}", path.display()))
}
