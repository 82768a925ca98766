//! `rudder ppo`: policy optimisation (PPO, RLOO, GRPO) against a reward model or command.
use crate::common::{load_model, DeviceArgs};
use crate::trainer_flags::{resolve, write_resolved, LoraFlags, TrainFlags};
use ::ppo::PpoConfig;
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use train::TrainerConfig;

/// PPO's own flags; each overrides the TOML field of the same name (defaults in brackets).
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct PpoFlags {
    /// Policy to train, also the frozen reference: HF folder, hub id or .gguf (required).
    #[arg(long)]
    pub model: Option<String>,
    /// Reward model folder (`rudder reward train` output or a transformers
    /// *ForSequenceClassification, one label) (required unless --reward-cmd).
    #[arg(long)]
    pub reward_model: Option<String>,
    /// Shell command scoring completions: reads {"prompt","completion"} JSONL on stdin, writes
    /// one number per line.
    #[arg(long)]
    pub reward_cmd: Option<String>,
    /// Prompts, JSONL or a JSON array of {"prompt": str | messages} (required).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// ppo, rloo or grpo [ppo].
    #[arg(long)]
    pub algo: Option<String>,
    /// Completions per prompt [1 for ppo, 4 for rloo/grpo].
    #[arg(long)]
    pub samples_per_prompt: Option<usize>,
    /// Longest prompt in tokens, cut from the left [512].
    #[arg(long)]
    pub max_prompt_len: Option<usize>,
    /// New tokens per completion [64].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Sampling temperature (> 0) [0.7].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Top-k sampling (0 = off) [0].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Top-p sampling (1 = off) [1].
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Score penalty for completions that never emit EOS [none].
    #[arg(long)]
    pub missing_eos_penalty: Option<f64>,
    /// KL coefficient β (initial, when adaptive) [0.05].
    #[arg(long)]
    pub kl_coef: Option<f64>,
    /// KL estimator: k1 or k3 [k1].
    #[arg(long)]
    pub kl_estimator: Option<String>,
    /// Adaptive KL: target per-completion KL [none: fixed β].
    #[arg(long)]
    pub target_kl: Option<f64>,
    /// Adaptive KL horizon in completions [10000].
    #[arg(long)]
    pub kl_horizon: Option<f64>,
    /// Clip scores to [-c, c] [none].
    #[arg(long)]
    pub score_clip: Option<f64>,
    /// Normalise scores by running mean and std [off].
    #[arg(long)]
    pub normalize_scores: bool,
    /// Whiten per-token rewards (ppo) [off].
    #[arg(long)]
    pub whiten_rewards: bool,
    /// Discount γ [1.0].
    #[arg(long)]
    pub gamma: Option<f64>,
    /// GAE λ [0.95].
    #[arg(long)]
    pub lam: Option<f64>,
    /// Whiten advantages: true or false [true for ppo, false for rloo].
    #[arg(long)]
    pub whiten_advantages: Option<bool>,
    /// Policy ratio clip ε [0.2].
    #[arg(long)]
    pub cliprange: Option<f64>,
    /// Value clip [0.2].
    #[arg(long)]
    pub cliprange_value: Option<f64>,
    /// Value loss weight [0.1].
    #[arg(long)]
    pub vf_coef: Option<f64>,
    /// Epochs over each rollout [4].
    #[arg(long)]
    pub ppo_epochs: Option<usize>,
    /// Completions per optimizer step [the whole rollout: batch-size × grad-accum × samples].
    #[arg(long)]
    pub mini_batch_size: Option<usize>,
    /// Stop a rollout's updates when approximate KL exceeds this [none].
    #[arg(long)]
    pub early_stop_kl: Option<f64>,
    /// Separate critic initialised from this reward model folder (ppo) [value head on policy].
    #[arg(long)]
    pub critic: Option<String>,
    /// Log and save a few samples every N rollouts [10].
    #[arg(long)]
    pub sample_every: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub lora: LoraFlags,
}

/// `rudder ppo`.
#[derive(Args, Debug)]
pub struct PpoArgs {
    #[command(flatten)]
    pub stage: PpoFlags,
    #[command(flatten)]
    pub train: TrainFlags,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: PpoArgs) -> Result<()> {
    let (trainer, cfg): (TrainerConfig, PpoConfig) = resolve(&args.train, &args.stage, "ppo")?;
    run_config(&trainer, &cfg, &args.device)
}

/// Runs PPO from resolved configs (also the pipeline's entry point).
pub fn run_config(trainer: &TrainerConfig, cfg: &PpoConfig, device: &DeviceArgs) -> Result<()> {
    cfg.validate(trainer).context("[ppo] config")?;
    let lora = cfg.lora().context("[ppo] config")?.is_some();
    let opts = device.load_options(!lora)?;
    let spec = cfg.model.clone().unwrap_or_default();
    std::fs::create_dir_all(&trainer.out)
        .with_context(|| format!("creating {}", trainer.out.display()))?;
    write_resolved("ppo", trainer, cfg)?;
    let pre = load_model(&spec, &opts)?;
    let o = ::ppo::train_ppo(pre, &opts, cfg, trainer).context("ppo")?;
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
