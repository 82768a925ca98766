//! `rudder ppo`: policy optimisation (PPO, RLOO, GRPO) against a reward model or command.
use crate::common::DeviceArgs;
use crate::settings::{resolve, LoopArgs};
use ::ppo::PpoConfig;
use anyhow::{Context, Result};
use clap::{ArgMatches, Args};
use train::TrainerConfig;

/// `rudder ppo`.
#[derive(Args, Debug)]
pub struct PpoArgs {
    #[command(flatten)]
    pub stage: PpoConfig,
    #[command(flatten)]
    pub train: LoopArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: PpoArgs, m: &ArgMatches) -> Result<()> {
    let (trainer, cfg) = resolve(&args.train, &args.stage, m, "ppo")?;
    train(&trainer, &cfg, &args.device)
}

/// Runs PPO from resolved settings and prints the outcome.
pub fn train(trainer: &TrainerConfig, cfg: &PpoConfig, device: &DeviceArgs) -> Result<()> {
    let lora = cfg.lora.lora_r.is_some();
    let o = ::ppo::run(cfg, trainer, &device.load_options(true)?).context("ppo")?;
    let s = &o.summary;
    println!(
        "ppo ({:?}): {} steps over {} rollouts, final loss {:.4}, kl_coef {:.4}, {} trainable \
         parameters{}; wrote {}",
        cfg.algo,
        s.steps,
        o.state.rollouts,
        s.final_loss.unwrap_or(f64::NAN),
        o.state.kl.value,
        o.trainable_params,
        if lora { " (LoRA adapter)" } else { "" },
        trainer.out.display()
    );
    Ok(())
}
