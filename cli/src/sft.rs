//! `rudder sft` (supervised fine-tuning, full or LoRA) and `rudder merge` (fold a LoRA adapter
//! into its base model).
use crate::common::DeviceArgs;
use crate::settings::{resolve, LoopArgs};
use ::sft::SftConfig;
use anyhow::{Context, Result};
use clap::{ArgMatches, Args};
use std::path::PathBuf;
use train::metrics::done_line;
use train::TrainerConfig;

/// `rudder sft`.
#[derive(Args, Debug)]
pub struct SftArgs {
    #[command(flatten)]
    pub stage: SftConfig,
    #[command(flatten)]
    pub train: LoopArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: SftArgs, m: &ArgMatches) -> Result<()> {
    let (trainer, cfg) = resolve(&args.train, &args.stage, m, "sft")?;
    train(&trainer, &cfg, &args.device)
}

/// Runs SFT from resolved settings and prints the outcome.
pub fn train(trainer: &TrainerConfig, cfg: &SftConfig, device: &DeviceArgs) -> Result<()> {
    let o = ::sft::run(cfg, trainer, &device.load_options(true)?).context("sft")?;
    let lora = cfg.lora.lora_r.is_some();
    let (s, n) = (&o.summary, o.trainable_params);
    println!("{}", done_line("sft", "", s, n, lora, &trainer.out));
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
    let opts = args.device.load_options(false)?;
    let spec = lm::save::merge_adapter(&args.model, &args.adapter, &args.out, &opts)
        .with_context(|| format!("merging {} into {}", args.adapter.display(), args.model))?;
    println!(
        "merged LoRA (r={}, alpha={}, {:?}) into a copy of {}; wrote {}",
        spec.r,
        spec.alpha,
        spec.targets,
        args.model,
        args.out.display()
    );
    Ok(())
}
