//! `rudder dpo`: direct preference optimisation against a frozen reference.
use crate::common::{load_model, DeviceArgs};
use crate::trainer_flags::{resolve, write_resolved, LoraFlags, TrainFlags};
use ::dpo::DpoConfig;
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use train::TrainerConfig;

/// DPO's own flags; each overrides the TOML field of the same name (defaults in brackets).
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct DpoFlags {
    /// Policy to train: HF folder, hub id or .gguf (required, here or in --config).
    #[arg(long)]
    pub model: Option<String>,
    /// Frozen reference model [the starting policy; with LoRA its base, adapter switched off].
    #[arg(long = "ref")]
    #[serde(rename = "ref")]
    pub ref_model: Option<String>,
    /// Preference pairs, JSONL or a JSON array: {"prompt","chosen","rejected"} or
    /// {"chosen","rejected"} (strings or message lists), the labeling export (+"votes",
    /// "agreement", "tie"), or LLaMA-Factory {"conversations","chosen","rejected"} (required).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluation pairs in the same formats; evaluated before, every --eval-every and after [none].
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Loss: sigmoid (DPO), ipo, hinge, robust, simpo [sigmoid].
    #[arg(long)]
    pub loss: Option<String>,
    /// Beta, the strength of the implicit KL penalty [0.1].
    #[arg(long)]
    pub beta: Option<f64>,
    /// Label-noise rate for sigmoid (conservative DPO), robust and simpo [0].
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// SimPO target margin gamma [0.5].
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Weight of an NLL term on the chosen completions (RPO) [0: off].
    #[arg(long)]
    pub rpo_alpha: Option<f64>,
    /// Ties from the labeling export: drop, or soft (label 0.5) [drop].
    #[arg(long)]
    pub ties: Option<String>,
    /// Compute the reference log-probs once (cached in --out), then free the reference [off].
    #[arg(long)]
    pub precompute_ref: bool,
    /// Longest prompt+completion in tokens; longer prompts lose tokens from the left [1024].
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Drop pairs longer than --max-seq-len instead of truncating them [off].
    #[arg(long)]
    pub drop_long: bool,
    /// Count and skip bad rows instead of stopping at the first [off].
    #[arg(long)]
    pub skip_bad_rows: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub lora: LoraFlags,
}

/// `rudder dpo`.
#[derive(Args, Debug)]
pub struct DpoArgs {
    #[command(flatten)]
    pub stage: DpoFlags,
    #[command(flatten)]
    pub train: TrainFlags,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: DpoArgs) -> Result<()> {
    let (trainer, cfg): (TrainerConfig, DpoConfig) = resolve(&args.train, &args.stage, "dpo")?;
    cfg.validate().context("[dpo] config")?;
    let lora = cfg.lora().context("[dpo] config")?.is_some();
    // LoRA keeps the base frozen: its weights are plain tensors, never Vars.
    let opts = args.device.load_options(!lora)?;
    let spec = cfg.model.clone().unwrap_or_default();
    std::fs::create_dir_all(&trainer.out)
        .with_context(|| format!("creating {}", trainer.out.display()))?;
    write_resolved("dpo", &trainer, &cfg)?;
    let pre = load_model(&spec, &opts)?;
    let o = ::dpo::train_dpo(pre, &opts, &cfg, &trainer).context("dpo")?;
    let s = &o.summary;
    let eval = |m: &std::collections::BTreeMap<String, f64>, k: &str| {
        m.get(k).copied().unwrap_or(f64::NAN)
    };
    println!(
        "dpo: {} steps, final loss {:.4}, {:.0} tokens/s, {} trainable parameters{}; wrote {}",
        s.steps,
        s.final_loss.unwrap_or(f64::NAN),
        s.tokens_per_s,
        o.trainable_params,
        if lora { " (LoRA adapter)" } else { "" },
        trainer.out.display()
    );
    if o.eval_data.is_some() {
        println!(
            "eval rewards/accuracies {:.4} -> {:.4}, rewards/margins {:.4} -> {:.4}",
            eval(&o.eval_before, "rewards/accuracies"),
            eval(&o.eval_after, "rewards/accuracies"),
            eval(&o.eval_before, "rewards/margins"),
            eval(&o.eval_after, "rewards/margins"),
        );
    }
    Ok(())
}
