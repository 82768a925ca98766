//! `rudder estimate`: what a run will cost before it starts — FLOPs from the model's shape and
//! the token budget (or the stage's data file), time and energy on this machine from a short
//! calibration run (or the last `rudder bench train`), and the same on named GPU classes from
//! their datasheet figures. The rules and meters are the `cost` crate's; this module knows the
//! stages' data formats and runs the calibration step.
use crate::{Error, Result};
use clap::Args;
use cost::{gpu_class, gpu_estimate, plan_flops, FlopModel, Plan, StageKind, GPU_CLASSES};
use std::path::PathBuf;

mod calib;

/// `rudder estimate`'s settings.
#[derive(Args, Debug, Clone)]
pub struct EstimateSettings {
    /// Model: HF folder, hub id, .gguf, or a config.json (then calibration uses random weights).
    #[arg(long)]
    pub model: String,
    /// Stage: sft, reward, dpo, kto or ppo.
    #[arg(long, default_value = "sft")]
    pub stage: String,
    /// Training tokens per epoch (non-padding).
    #[arg(long, required_unless_present = "data", conflicts_with = "data")]
    pub tokens: Option<u64>,
    /// The training data instead of --tokens (the stage's format; tokenised with the model's
    /// tokenizer and cut at --max-seq-len). PPO: prompt rows, each with --response-len tokens.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value_t = 1.0)]
    pub epochs: f64,
    /// Mean row length with --tokens (the attention term); --data measures it.
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Row cut with --data.
    #[arg(long, default_value_t = 1024)]
    pub max_seq_len: usize,
    /// LoRA rank (trainable = the adapters) [none: full training].
    #[arg(long)]
    pub lora_r: Option<usize>,
    /// LoRA projections, or all-linear.
    #[arg(long, value_delimiter = ',', default_value = "q_proj,v_proj")]
    pub lora_targets: Vec<String>,
    /// PPO: optimisation epochs per rollout (TRL's default).
    #[arg(long, default_value_t = 4)]
    pub ppo_epochs: usize,
    /// PPO: generated tokens per prompt with --data.
    #[arg(long, default_value_t = 64)]
    pub response_len: usize,
    /// GPU classes to compare (comma-separated) [all known].
    #[arg(long, value_delimiter = ',')]
    pub gpu: Vec<String>,
    /// Model FLOPs utilisation assumed on the GPU classes.
    #[arg(long, default_value_t = 0.4)]
    pub mfu: f64,
    /// Use the last `rudder bench train` result instead of calibrating.
    #[arg(long)]
    pub from_bench: bool,
    /// Calibration: rows × tokens per step, and timed steps (after one warm-up step).
    #[arg(long, default_value_t = 2)]
    pub calib_batch: usize,
    /// Calibration row length [the plan's mean row length, 16 to 1024].
    #[arg(long)]
    pub calib_seq: Option<usize>,
    #[arg(long, default_value_t = 2)]
    pub calib_steps: usize,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Whether the run recomputes layer activations in the backward pass (the trainers'
    /// default) [true].
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub gradient_checkpointing: bool,
    #[command(flatten)]
    pub cost: cost::CostSettings,
}

/// What the estimate found: the machine-readable record (`--json`) and the table.
pub struct EstimateReport {
    pub json: serde_json::Value,
    pub text: String,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::Invalid(reason.into())
}

/// Estimates the run `a` describes; `load` gives the device and precision of the calibration.
pub fn estimate(a: &EstimateSettings, load: &lm::LoadOptions) -> Result<EstimateReport> {
    let Some(stage) = StageKind::parse(&a.stage) else {
        let stage = &a.stage;
        return Err(invalid(format!(
            "--stage: `{stage}` is not one of sft, reward, dpo, kto, ppo"
        )));
    };
    if !(a.epochs > 0.0 && a.mfu > 0.0) {
        return Err(invalid("--epochs and --mfu must be > 0"));
    }
    let settings = &a.cost;
    let loaded = calib::load(a, load)?;
    let (plan, data_note) = plan(a, stage, &loaded)?;
    let flops = plan_flops(&plan);
    let calib_seq = a
        .calib_seq
        .unwrap_or((plan.row_len.round() as usize).clamp(16, 1024));
    let here = calib::this_machine(a, calib_seq, loaded, settings)?;
    let mut rows = vec![cost::estimate(
        "this machine",
        flops.total(),
        &here,
        settings,
    )];
    for g in gpu_list(&a.gpu)? {
        rows.push(gpu_estimate(flops.total(), g, a.mfu, settings));
    }
    let json = serde_json::json!({
        "stage": stage.name(), "tokens_per_epoch": plan.tokens, "epochs": a.epochs,
        "row_len": plan.row_len, "flops": flops, "flop_rule": plan.model.rule(),
        "grid_gco2_per_kwh": settings.grid_gco2_per_kwh, "estimates": rows,
    });
    let lora = a
        .lora_r
        .map(|r| format!(", LoRA r={r} ({} trainable)", plan.trainable));
    let text = format!(
        "estimate: {} on {}, {} tokens/epoch{data_note} × {} epochs, rows of {:.0} tokens{}\n\
         FLOPs: {:.3e} (forward {:.3e}, backward {:.3e}); {}\n{}",
        stage.name(),
        a.model,
        plan.tokens,
        a.epochs,
        plan.row_len,
        lora.unwrap_or_default(),
        flops.total(),
        flops.forward,
        flops.backward,
        plan.model.rule(),
        cost::estimate_table(&rows, settings.grid_gco2_per_kwh)
    );
    Ok(EstimateReport { json, text })
}

/// What the run trains: tokens (from `--data`, else `--tokens`), row length, the trainable
/// parameters (LoRA's adapters, else all), the optimisation passes; and a note on the data.
fn plan(a: &EstimateSettings, stage: StageKind, m: &calib::Loaded) -> Result<(Plan, String)> {
    let (tokens, row_len, note) = match &a.data {
        Some(path) => calib::count_tokens(a, path, stage, m)?,
        None => (a.tokens.unwrap_or(0), a.seq_len as f64, String::new()),
    };
    let trainable = match a.lora_r {
        Some(r) => lm::lora::adapter_params(&m.config, &lora_spec(r, &a.lora_targets))
            .map_err(|e| invalid(format!("--lora-r, --lora-targets: {e}")))?,
        None => u64::MAX,
    };
    let model = FlopModel {
        dims: cost::model_dims(&m.config),
        stage,
        recompute: a.gradient_checkpointing,
    };
    let updates_per_batch = match stage {
        StageKind::Ppo => a.ppo_epochs as f64,
        _ => 1.0,
    };
    let plan = Plan {
        model,
        tokens,
        epochs: a.epochs,
        row_len,
        trainable,
        updates_per_batch,
    };
    Ok((plan, note))
}

/// The adapters `--lora-r` and `--lora-targets` describe (the count needs no alpha).
fn lora_spec(r: usize, targets: &[String]) -> lm::lora::LoraSpec {
    lm::lora::LoraSpec {
        r,
        alpha: 16.0,
        dropout: 0.0,
        targets: targets.to_vec(),
        rslora: false,
    }
}

fn gpu_list(names: &[String]) -> Result<Vec<&'static cost::GpuClass>> {
    if names.is_empty() {
        return Ok(GPU_CLASSES.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            gpu_class(n).ok_or_else(|| {
                let known: Vec<&str> = GPU_CLASSES.iter().map(|c| c.name).collect();
                invalid(format!(
                    "--gpu `{n}`: unknown class (known: {})",
                    known.join(", ")
                ))
            })
        })
        .collect()
}
