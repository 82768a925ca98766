//! `rudder kto`: Kahneman–Tversky optimisation on unpaired rows against a frozen reference.
use crate::common::DeviceArgs;
use crate::settings::{resolve, LoopArgs};
use ::kto::KtoConfig;
use anyhow::{Context, Result};
use clap::{ArgMatches, Args};
use train::metrics::{done_line, eval_line};
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
    let d = &o.train_data;
    let rows = format!(
        " on {} rows ({} desirable, {} undesirable)",
        d.rows, d.desirable, d.undesirable
    );
    let (s, n) = (&o.summary, o.trainable_params);
    println!("{}", done_line("kto", &rows, s, n, lora, &trainer.out));
    if o.eval_data.is_some() {
        let keys = ["loss", "rewards/margins", "kl"];
        println!("{}", eval_line(&keys, &o.eval_before, &o.eval_after));
    }
    Ok(())
}
