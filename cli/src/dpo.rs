//! `rudder dpo`: direct preference optimisation against a frozen reference.
use crate::common::DeviceArgs;
use crate::settings::{resolve, LoopArgs};
use ::dpo::DpoConfig;
use anyhow::{Context, Result};
use clap::{ArgMatches, Args};
use train::metrics::{done_line, eval_line};
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
    let (s, n) = (&o.summary, o.trainable_params);
    println!("{}", done_line("dpo", "", s, n, lora, &trainer.out));
    if o.eval_data.is_some() {
        let keys = ["rewards/accuracies", "rewards/margins"];
        println!("{}", eval_line(&keys, &o.eval_before, &o.eval_after));
    }
    Ok(())
}
