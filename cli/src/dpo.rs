//! `rudder dpo`: direct preference optimisation against a frozen reference.
use crate::common::DeviceArgs;
use crate::settings::{resolve, LoopArgs};
use ::dpo::DpoConfig;
use anyhow::{Context, Result};
use clap::{ArgMatches, Args};
use train::TrainerConfig;

/// `rudder dpo`.
#[derive(Args, Debug)]
pub struct DpoArgs {
    #[command(flatten)]
    pub stage: DpoConfig,
    #[command(flatten)]
    pub train: LoopArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: DpoArgs, m: &ArgMatches) -> Result<()> {
    let (trainer, cfg) = resolve(&args.train, &args.stage, m, "dpo")?;
    train(&trainer, &cfg, &args.device)
}

/// Runs DPO from resolved settings and prints the outcome.
pub fn train(trainer: &TrainerConfig, cfg: &DpoConfig, device: &DeviceArgs) -> Result<()> {
    let lora = cfg.lora.lora_r.is_some();
    let o = ::dpo::run(cfg, trainer, &device.load_options(true)?).context("dpo")?;
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
