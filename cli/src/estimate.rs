//! `rudder estimate`: what a run will cost before it starts — FLOPs from the model's shape and
//! the token budget, time and energy on this machine from a short calibration run (or the last
//! `rudder bench train`), and the same on named GPU classes from their datasheet figures.
use crate::common::DeviceArgs;
use crate::trainer_flags::CostFlags;
use anyhow::{bail, Context, Result};
use clap::Args;
use lm::ModelConfig;
use std::path::{Path, PathBuf};
use train::cost::{
    gpu_class, gpu_estimate, plan_flops, Estimate, FlopModel, ModelDims, Plan, StageKind,
    GPU_CLASSES, WORLD_GCO2_SOURCE,
};

#[path = "estimate_calib.rs"]
mod calib;
pub use calib::store_bench;

/// `rudder estimate`.
#[derive(Args, Debug)]
pub struct EstimateArgs {
    /// Model: HF folder, hub id, .gguf, or a config.json (then calibration uses random weights).
    #[arg(long)]
    pub model: String,
    /// Stage: sft, reward, dpo or ppo.
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
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub gradient_checkpointing: bool,
    #[command(flatten)]
    pub cost: CostFlags,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The shape numbers FLOP counts need.
pub fn dims(c: &ModelConfig) -> ModelDims {
    compare::cost::model_dims(c)
}

/// A model's config: a config.json, an HF folder or hub id, or a GGUF (read in full).
pub fn model_config(spec: &str) -> Result<ModelConfig> {
    let path = Path::new(spec);
    if path.is_file() && path.extension().is_some_and(|e| e == "json") {
        return Ok(ModelConfig::from_file(path)?);
    }
    match lm::load::resolve(spec).with_context(|| format!("model `{spec}`"))? {
        lm::ModelSource::Folder(dir) => Ok(ModelConfig::from_file(&lm::config::config_path(&dir))?),
        lm::ModelSource::Gguf(p) => {
            let raw = lm::gguf::read_gguf(&p)
                .with_context(|| format!("reading {}", p.display()))?
                .config;
            Ok(ModelConfig::from_json(raw, &p)?)
        }
    }
}

/// The FLOP model a trainer's loop counts with, from its `--model` and stage name. GGUF models
/// are skipped (their config sits behind the whole tensor payload; the run reports no FLOPs).
pub fn flop_model(spec: &str, stage: &str) -> Option<FlopModel> {
    let gguf = Path::new(spec).extension().is_some_and(|e| e == "gguf");
    let config = (!gguf).then(|| model_config(spec)).and_then(|c| {
        c.map_err(|e| tracing::warn!("cost: no FLOP counts: {e:#}"))
            .ok()
    })?;
    Some(FlopModel {
        dims: dims(&config),
        stage: StageKind::parse(stage).unwrap_or_default(),
        recompute: false,
    })
}

/// LoRA adapter parameters: `r × (in + out)` per adapted projection per layer.
pub fn lora_params(d: &ModelDims, r: usize, targets: &[String]) -> Result<u64> {
    let (h, i) = (d.hidden_size, d.intermediate_size);
    let (q, kv) = (d.num_heads * d.head_dim, d.num_kv_heads * d.head_dim);
    let all = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];
    let names: Vec<&str> = if targets.iter().any(|t| t == "all-linear") {
        all.to_vec()
    } else {
        targets.iter().map(String::as_str).collect()
    };
    let mut per_layer = 0;
    for t in names {
        per_layer += match t {
            "q_proj" | "o_proj" => h + q,
            "k_proj" | "v_proj" => h + kv,
            "gate_proj" | "up_proj" | "down_proj" => h + i,
            other => bail!("--lora-targets: `{other}` is not one of {}", all.join(", ")),
        };
    }
    Ok((r * per_layer * d.num_layers) as u64)
}

pub fn run(a: EstimateArgs) -> Result<()> {
    let Some(stage) = StageKind::parse(&a.stage) else {
        bail!("--stage: `{}` is not one of sft, reward, dpo, ppo", a.stage);
    };
    anyhow::ensure!(
        a.epochs > 0.0 && a.mfu > 0.0,
        "--epochs and --mfu must be > 0"
    );
    let settings = a.cost.settings();
    let loaded = calib::load(&a)?;
    let model = FlopModel {
        dims: dims(&loaded.config),
        stage,
        recompute: a.gradient_checkpointing,
    };
    let (tokens, row_len, data_note) = match &a.data {
        Some(path) => calib::count_tokens(&a, path, stage, &loaded)?,
        None => (a.tokens.unwrap_or(0), a.seq_len as f64, String::new()),
    };
    let trainable = match a.lora_r {
        Some(r) => lora_params(&model.dims, r, &a.lora_targets)?,
        None => u64::MAX,
    };
    let plan = Plan {
        model: model.clone(),
        tokens,
        epochs: a.epochs,
        row_len,
        trainable,
        updates_per_batch: if stage == StageKind::Ppo {
            a.ppo_epochs as f64
        } else {
            1.0
        },
    };
    let flops = plan_flops(&plan);
    let calib_seq = a
        .calib_seq
        .unwrap_or((row_len.round() as usize).clamp(16, 1024));
    let here = calib::this_machine(&a, calib_seq, loaded, &settings)?;
    let mut rows = vec![train::cost::estimate(
        "this machine",
        flops.total(),
        &here,
        &settings,
    )];
    for g in gpu_list(&a.gpu)? {
        rows.push(gpu_estimate(flops.total(), g, a.mfu, &settings));
    }
    if a.json {
        let v = serde_json::json!({
            "stage": stage.name(), "tokens_per_epoch": tokens, "epochs": a.epochs,
            "row_len": row_len, "flops": flops, "flop_rule": model.rule(),
            "grid_gco2_per_kwh": settings.grid_gco2_per_kwh, "estimates": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "estimate: {} on {}, {tokens} tokens/epoch{data_note} × {} epochs, rows of {row_len:.0} tokens{}",
        stage.name(),
        a.model,
        a.epochs,
        a.lora_r.map(|r| format!(", LoRA r={r} ({trainable} trainable)")).unwrap_or_default()
    );
    println!(
        "FLOPs: {:.3e} (forward {:.3e}, backward {:.3e}); {}",
        flops.total(),
        flops.forward,
        flops.backward,
        model.rule()
    );
    print_table(&rows, settings.grid_gco2_per_kwh);
    Ok(())
}

fn gpu_list(names: &[String]) -> Result<Vec<&'static train::cost::GpuClass>> {
    if names.is_empty() {
        return Ok(GPU_CLASSES.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            gpu_class(n).with_context(|| {
                let known: Vec<&str> = GPU_CLASSES.iter().map(|c| c.name).collect();
                format!("--gpu `{n}`: unknown class (known: {})", known.join(", "))
            })
        })
        .collect()
}

/// `1.2 h`, `35 s`, ...
pub fn human_time(s: f64) -> String {
    match s {
        s if !s.is_finite() => "n/a".into(),
        s if s < 1.0 => format!("{:.2} ms", s * 1e3),
        s if s < 120.0 => format!("{s:.1} s"),
        s if s < 7200.0 => format!("{:.1} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86_400.0),
    }
}

fn print_table(rows: &[Estimate], grid: f64) {
    println!(
        "{:<14} {:>11} {:>11} {:>10} {:>10} {:>9}  how",
        "machine", "time", "energy", "", "CO2-eq", "cost"
    );
    for e in rows {
        let kind = serde_json::to_value(e.energy).ok();
        println!(
            "{:<14} {:>11} {:>11} {:>10} {:>10} {:>9}  {}",
            e.machine,
            human_time(e.seconds),
            train::cost::human_energy(e.energy_kwh),
            kind.as_ref().and_then(|k| k.as_str()).unwrap_or(""),
            train::cost::human_co2(e.co2_g),
            e.cost
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "-".into()),
            e.how
        );
    }
    println!("CO2-eq at {grid} g/kWh (default {WORLD_GCO2_SOURCE}; --grid-gco2-per-kwh)");
}

/// `rudder pipeline`'s cost lines, printed.
pub fn pipeline_cost(stages: &[(&str, PathBuf)]) {
    pipeline_cost_lines(stages)
        .iter()
        .for_each(|l| println!("{l}"));
}

/// One line per stage from its `summary.json` cost block (compare: its models' sampling), and
/// their total (stages that did not run are left out).
pub fn pipeline_cost_lines(stages: &[(&str, PathBuf)]) -> Vec<String> {
    let (mut parts, mut lines) = (vec![], vec![]);
    for (stage, dir) in stages {
        let path = dir.join("summary.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let cost = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| summary_cost(&v));
        if let Some(c) = cost {
            lines.push(format!("pipeline: [{stage}] {}", cost_line(&c)));
            parts.push(c);
        }
    }
    if parts.len() > 1 {
        let total = train::cost::CostReport::total(&parts);
        lines.push(format!("pipeline: [total] {}", cost_line(&total)));
    }
    lines
}

/// A trainer's `cost` block, or the total of `rudder compare`'s per-model sampling costs.
fn summary_cost(v: &serde_json::Value) -> Option<train::cost::CostReport> {
    use train::cost::CostReport;
    if let Ok(c) = serde_json::from_value::<CostReport>(v["cost"].clone()) {
        return Some(c);
    }
    let parts: Vec<CostReport> = v["models"]
        .as_array()?
        .iter()
        .filter_map(|m| serde_json::from_value(m["cost"]["cost"].clone()).ok())
        .collect();
    (!parts.is_empty()).then(|| CostReport::total(&parts))
}

/// One line: FLOPs, time, energy (label), CO2-eq, price.
pub fn cost_line(c: &train::cost::CostReport) -> String {
    let kind = serde_json::to_value(c.energy).ok();
    format!(
        "cost: {:.3e} FLOPs, {}, {} {}, {} CO2-eq{}",
        c.flops,
        human_time(c.wall_s),
        train::cost::human_energy(c.energy_kwh),
        kind.as_ref().and_then(|k| k.as_str()).unwrap_or(""),
        train::cost::human_co2(c.co2_g),
        c.cost
            .map(|p| format!(", price {p:.2}"))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fixtures/tiny-llama: hidden 64, MLP 160, 2 layers, 4 heads and 2 kv heads of 16, vocab
    /// 384. By hand: layer = 64·64 + 2·64·32 + 64·64 + 3·64·160 = 43,008; 2 layers + head
    /// 64·384 = 110,592. LoRA r=8 on q (64+64) and v (64+32): 8·224·2 layers = 3,584; all-linear:
    /// 8·(128+96+96+128+3·224)·2 = 17,920.
    #[test]
    fn tiny_llama_flop_model_and_lora_size() -> Result<()> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny-llama");
        let m = flop_model(dir, "dpo").context("flop model")?;
        assert_eq!(m.stage, StageKind::Dpo);
        assert_eq!(m.dims.matmul_params(true), 110_592);
        let qv = ["q_proj".to_string(), "v_proj".to_string()];
        assert_eq!(lora_params(&m.dims, 8, &qv)?, 3_584);
        assert_eq!(
            lora_params(&m.dims, 8, &["all-linear".to_string()])?,
            17_920
        );
        assert!(lora_params(&m.dims, 8, &["qproj".to_string()]).is_err());
        assert!(flop_model("no/such/model", "sft").is_none());
        assert_eq!(human_time(5400.0), "90.0 min");
        Ok(())
    }

    #[test]
    fn pipeline_lines_per_stage_and_total() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let block = |kwh: f64, kind: &str| {
            serde_json::json!({"steps": 1, "cost": {
                "tokens": 10, "flops": 1e9, "flops_forward": 0.0, "flops_backward": 0.0,
                "flop_rule": "", "wall_s": 30.0, "phases_s": {}, "device": {"device": "cpu",
                "name": "x", "threads": 1, "peak_flop_s": 0.0, "peak_source": ""},
                "achieved_flop_s": 0.0, "utilisation": null, "energy_kwh": kwh,
                "energy": kind, "energy_source": "s", "avg_power_w": 0.0,
                "grid_gco2_per_kwh": 500.0, "co2_g": kwh * 500.0, "price_per_hour": null,
                "cost": null}})
        };
        for (stage, kwh, kind) in [("sft", 0.002, "measured"), ("dpo", 0.001, "estimated")] {
            std::fs::create_dir(dir.path().join(stage))?;
            let text = serde_json::to_string(&block(kwh, kind))?;
            std::fs::write(dir.path().join(stage).join("summary.json"), text)?;
        }
        let stages = ["sft", "reward", "dpo"].map(|s| (s, dir.path().join(s)));
        let lines = pipeline_cost_lines(&stages);
        assert_eq!(lines.len(), 3, "{lines:?}");
        // compare: its models' sampling costs add up into one line.
        // As compare's summary.json: models[i].cost = {model, rows, generated_tokens, cost}.
        let side = |kwh| {
            let c = block(kwh, "measured")["cost"].clone();
            serde_json::json!({"name": "m", "cost": {"model": "m", "rows": 1, "cost": c}})
        };
        let compare = serde_json::json!({"models": [side(0.001), side(0.002)]});
        std::fs::create_dir(dir.path().join("compare"))?;
        std::fs::write(dir.path().join("compare/summary.json"), compare.to_string())?;
        let with = pipeline_cost_lines(&[("compare", dir.path().join("compare"))]);
        assert_eq!(
            with,
            ["pipeline: [compare] cost: 2.000e9 FLOPs, 60.0 s, 3.0 Wh measured, 1.5 g CO2-eq"]
        );
        assert_eq!(
            lines[0],
            "pipeline: [sft] cost: 1.000e9 FLOPs, 30.0 s, 2.0 Wh measured, 1.0 g CO2-eq"
        );
        assert_eq!(
            lines[2],
            "pipeline: [total] cost: 2.000e9 FLOPs, 60.0 s, 3.0 Wh estimated, 1.5 g CO2-eq"
        );
        Ok(())
    }
}
