//! `rudder reward train` (Bradley–Terry reward model on preference pairs, full or LoRA) and
//! `rudder reward score` (adds `"reward"` to `{"prompt","completion"}` rows).
use crate::common::DeviceArgs;
use crate::trainer_flags::{resolve, write_resolved, LoraFlags, TrainFlags};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use reward_model::RewardConfig;
use serde::Serialize;
use std::path::PathBuf;
use train::TrainerConfig;

#[derive(Subcommand, Debug)]
pub enum RewardCommand {
    /// Train a reward model on pairwise preferences (TRL prompt/chosen/rejected rows, the
    /// labeling export, LLaMA-Factory pairwise rows).
    Train(Box<TrainArgs>),
    /// Score {"prompt","completion"} rows with a reward model; writes the rows plus "reward".
    Score(ScoreArgs),
}

/// The reward stage's own flags; each overrides the TOML field of the same name.
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct RewardFlags {
    /// Backbone: HF folder, hub id or .gguf, usually the SFT output (required, here or in --config).
    #[arg(long)]
    pub model: Option<String>,
    /// Preference pairs, JSONL or JSON array (required).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Held-out pairs: accuracy, margin, reward stats (and by agreement) at --eval-every and the end.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Longest prompt+completion in tokens; longer pairs lose prompt tokens from the left [1024].
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Drop pairs longer than --max-seq-len instead of truncating them [off].
    #[arg(long)]
    pub drop_long: bool,
    /// Count and skip bad rows (identical chosen/rejected, missing fields) [off: stop at the first].
    #[arg(long)]
    pub skip_bad_rows: bool,
    /// Keep each ranking's pairs (rows sharing a "group", as `rudder label export` writes them)
    /// in one batch element; --batch-size then counts rankings [off].
    #[arg(long)]
    pub group_pairs: bool,
    /// TRL's center_rewards_coefficient: adds coef * mean((r_c + r_r)^2) [none].
    #[arg(long)]
    pub center_rewards_coefficient: Option<f64>,
    /// Seed of the score head's init [42].
    #[arg(long)]
    pub head_seed: Option<u64>,
    /// Pairs per forward pass when evaluating [8].
    #[arg(long)]
    pub eval_batch_size: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub lora: LoraFlags,
}

/// `rudder reward train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub stage: RewardFlags,
    /// Ignore the rows' "margin" field [off: subtract it inside the sigmoid, as TRL].
    #[arg(long)]
    pub no_margin: bool,
    #[command(flatten)]
    pub train: TrainFlags,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `rudder reward score`.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Reward model folder (a `rudder reward train` output or a transformers
    /// *ForSequenceClassification with num_labels = 1).
    #[arg(long)]
    pub model: String,
    /// Rows {"prompt","completion"} (strings or message lists), JSONL or JSON array.
    #[arg(long)]
    pub data: PathBuf,
    /// Output JSONL: every input row with "reward" added.
    #[arg(long)]
    pub out: PathBuf,
    /// Rows per forward pass (rows are grouped by length) [8].
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Keep at most this many tokens per row, cutting the prompt from the left [none].
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(cmd: RewardCommand) -> Result<()> {
    match cmd {
        RewardCommand::Train(a) => train(*a),
        RewardCommand::Score(a) => score(a),
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let (trainer, mut cfg): (TrainerConfig, RewardConfig) =
        resolve(&args.train, &args.stage, "reward")?;
    cfg.use_margin &= !args.no_margin;
    cfg.validate().context("[reward] config")?;
    let opts = args.device.load_options(true)?;
    std::fs::create_dir_all(&trainer.out)
        .with_context(|| format!("creating {}", trainer.out.display()))?;
    write_resolved("reward", &trainer, &cfg)?;
    let o = reward_model::train_reward(&cfg, &trainer, &opts).context("reward train")?;
    let s = &o.summary;
    let acc = o
        .eval
        .get("accuracy")
        .map(|a| format!(", eval accuracy {:.3}", a))
        .unwrap_or_default();
    println!(
        "reward: {} steps on {} pairs, final loss {:.4}{acc}, {:.0} tokens/s, {} trainable parameters{}; wrote {}",
        s.steps,
        o.train_pairs,
        s.final_loss.unwrap_or(f64::NAN),
        s.tokens_per_s,
        o.trainable_params,
        if cfg.lora.lora_r.is_some() { " (LoRA, merged on save)" } else { "" },
        trainer.out.display()
    );
    Ok(())
}

fn score(args: ScoreArgs) -> Result<()> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be > 0");
    anyhow::ensure!(args.max_seq_len != Some(0), "--max-seq-len must be > 0");
    let opts = args.device.load_options(false)?;
    let mut rm = reward_model::RewardModel::load(&args.model, &opts)
        .with_context(|| format!("loading reward model `{}`", args.model))?;
    rm.score_batch_size = args.batch_size;
    let (rows, truncated) = reward_model::score_rows::score_file(&rm, &args.data, args.max_seq_len)
        .with_context(|| format!("scoring {}", args.data.display()))?;
    lm::jsonl::write_rows(&args.out, &rows)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let cut = if truncated > 0 {
        format!(" ({truncated} truncated to --max-seq-len)")
    } else {
        String::new()
    };
    println!(
        "scored {} rows{cut}; wrote {}",
        rows.len(),
        args.out.display()
    );
    Ok(())
}
