//! `rudder kto`: Kahneman–Tversky optimisation on unpaired rows against a frozen reference.
use crate::common::DeviceArgs;
use crate::settings::{resolve, LoopArgs};
use ::kto::KtoConfig;
use anyhow::{Context, Result};
use clap::{ArgMatches, Args};
use train::TrainerConfig;

/// `rudder kto`.
#[derive(Args, Debug)]
pub struct KtoArgs {
    #[command(flatten)]
    pub stage: KtoConfig,
    #[command(flatten)]
    pub train: LoopArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: KtoArgs, m: &ArgMatches) -> Result<()> {
    let (trainer, cfg) = resolve(&args.train, &args.stage, m, "kto")?;
    train(&trainer, &cfg, &args.device)
}

/// Runs KTO from resolved settings and prints the outcome.
pub fn train(trainer: &TrainerConfig, cfg: &KtoConfig, device: &DeviceArgs) -> Result<()> {
    let lora = cfg.lora.lora_r.is_some();
    let o = ::kto::run(cfg, trainer, &device.load_options(true)?).context("kto")?;
    let s = &o.summary;
    println!(
        "kto: {} steps on {} rows ({} desirable, {} undesirable), final loss {:.4}, {:.0} tokens/s, {} trainable parameters{}; wrote {}",
        s.steps,
        o.train_data.rows,
        o.train_data.desirable,
        o.train_data.undesirable,
        s.final_loss.unwrap_or(f64::NAN),
        s.tokens_per_s,
        o.trainable_params,
        if lora { " (LoRA adapter)" } else { "" },
        trainer.out.display()
    );
    if o.eval_data.is_some() {
        let get = |m: &std::collections::BTreeMap<String, f64>, k: &str| {
            m.get(k).copied().unwrap_or(f64::NAN)
        };
        println!(
            "eval loss {:.4} -> {:.4}, rewards/margins {:.4} -> {:.4}, kl {:.4} -> {:.4}",
            get(&o.eval_before, "loss"),
            get(&o.eval_after, "loss"),
            get(&o.eval_before, "rewards/margins"),
            get(&o.eval_after, "rewards/margins"),
            get(&o.eval_before, "kl"),
            get(&o.eval_after, "kl"),
        );
    }
    Ok(())
}
