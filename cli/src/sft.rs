//! `rudder sft` (supervised fine-tuning, full or LoRA) and `rudder merge` (fold a LoRA adapter
//! into its base model).
use crate::common::{load_model, DeviceArgs};
use crate::trainer_flags::{resolve, write_resolved, LoraFlags, TrainFlags};
use ::sft::SftConfig;
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use train::TrainerConfig;

/// SFT's own flags; each overrides the TOML field of the same name (defaults in brackets).
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct SftFlags {
    /// Model to fine-tune: HF folder, hub id or .gguf (required, here or in --config).
    #[arg(long)]
    pub model: Option<String>,
    /// Training rows, JSONL or a JSON array: {"text"}, {"prompt","completion"} (strings or
    /// message lists), {"messages":[{"role","content"}..]}, or Alpaca
    /// {"instruction","input","output"} (required).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluation rows in the same formats; eval loss every --eval-every steps [none].
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Cut tokenized rows to this many tokens; the log counts truncated rows [1024].
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Train on prompt / non-assistant tokens too [off: completion / assistant tokens only].
    #[arg(long)]
    pub loss_on_all: bool,
    /// Pack several samples per row (no attention across samples, positions reset) [off].
    #[arg(long)]
    pub packing: bool,
    /// Count and skip bad rows instead of stopping at the first [off].
    #[arg(long)]
    pub skip_bad_rows: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub lora: LoraFlags,
}

/// `rudder sft`.
#[derive(Args, Debug)]
pub struct SftArgs {
    #[command(flatten)]
    pub stage: SftFlags,
    #[command(flatten)]
    pub train: TrainFlags,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: SftArgs) -> Result<()> {
    let (trainer, cfg): (TrainerConfig, SftConfig) = resolve(&args.train, &args.stage, "sft")?;
    cfg.validate().context("[sft] config")?;
    let lora = cfg.lora().context("[sft] config")?.is_some();
    // LoRA keeps the base frozen: its weights are plain tensors, never Vars.
    let opts = args.device.load_options(!lora)?;
    let spec = cfg.model.clone().unwrap_or_default();
    std::fs::create_dir_all(&trainer.out)
        .with_context(|| format!("creating {}", trainer.out.display()))?;
    write_resolved("sft", &trainer, &cfg)?;
    let pre = load_model(&spec, &opts)?;
    let o = ::sft::train_sft(pre, &cfg, &trainer).context("sft")?;
    let s = &o.summary;
    println!(
        "sft: {} steps, final loss {:.4}, {:.0} tokens/s, {} trainable parameters{}; wrote {}",
        s.steps,
        s.final_loss.unwrap_or(f64::NAN),
        s.tokens_per_s,
        o.trainable_params,
        if lora { " (LoRA adapter)" } else { "" },
        trainer.out.display()
    );
    Ok(())
}

/// `rudder merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Base model the adapter was trained on: HF folder, hub id or .gguf.
    #[arg(long)]
    pub model: String,
    /// PEFT LoRA folder (adapter_config.json + adapter_model.safetensors), e.g. a
    /// `rudder sft --lora-r ...` output or one written by PEFT.
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output model folder (transformers-loadable).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn merge(args: MergeArgs) -> Result<()> {
    let mut pre = load_model(&args.model, &args.device.load_options(false)?)?;
    let (spec, _) = pre
        .model
        .load_adapter(&args.adapter)
        .with_context(|| format!("loading adapter {}", args.adapter.display()))?;
    lm::save::save_pretrained(&pre.model, &pre.tokenizer, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "merged LoRA (r={}, alpha={}, {:?}) into {}; wrote {}",
        spec.r,
        spec.alpha,
        spec.targets,
        args.model,
        args.out.display()
    );
    Ok(())
}
