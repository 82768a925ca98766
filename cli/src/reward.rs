//! `rudder reward train` (Bradley–Terry reward model on preference pairs, full or LoRA) and
//! `rudder reward score` (adds `"reward"` to `{"prompt","completion"}` rows).
use crate::common::DeviceArgs;
use crate::settings::resolve;
use anyhow::{Context, Result};
use clap::{ArgMatches, Args, Subcommand};
use reward_model::RewardConfig;
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

/// `rudder reward train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub stage: RewardConfig,
    /// Ignore the rows' "margin" field (shorthand for --use-margin false).
    #[arg(long)]
    pub no_margin: bool,
    #[command(flatten)]
    pub train: crate::settings::LoopArgs,
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

pub fn run(cmd: RewardCommand, m: &ArgMatches) -> Result<()> {
    match cmd {
        RewardCommand::Train(a) => {
            let (trainer, mut cfg) = resolve(&a.train, &a.stage, m, "reward")?;
            cfg.use_margin &= !a.no_margin;
            train(&trainer, &cfg, &a.device)
        }
        RewardCommand::Score(a) => score(a),
    }
}

/// Trains a reward model from resolved settings and prints the outcome.
pub fn train(trainer: &TrainerConfig, cfg: &RewardConfig, device: &DeviceArgs) -> Result<()> {
    let o = reward_model::run(cfg, trainer, &device.load_options(true)?).context("reward train")?;
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
    let (model, data) = (Some(args.model.as_str()), Some(args.data.as_path()));
    let inputs = train::inputs::set(&[("model", model)], &[("data", data)]);
    train::check_inputs(&inputs, train::inputs::flag)?;
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
