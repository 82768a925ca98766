//! One SFT run end to end: data, trainable parameters (full or LoRA), `train::run`, and the
//! outputs next to the loop's checkpoints and metrics.
use crate::config::SftConfig;
use crate::stage::{into_rows, SftStage};
use crate::tokenize::{prepare, DataStats, Sample};
use crate::Result;
use lm::{LoadOptions, Pretrained, Tokenizer};
use std::path::{Path, PathBuf};
use train::{TrainSummary, TrainerConfig};

/// What a run produced.
#[derive(Debug, serde::Serialize)]
pub struct SftOutcome {
    pub summary: TrainSummary,
    pub train_data: DataStats,
    pub eval_data: Option<DataStats>,
    /// Rows the loop iterates over (packed rows with `packing`).
    pub train_rows: usize,
    pub trainable_params: usize,
    /// The loss plot.
    pub plot: PathBuf,
    /// The trained model (adapters attached with LoRA).
    #[serde(skip)]
    pub model: lm::CausalLm,
}

/// Reads, parses and tokenizes a data file, logging what was skipped or truncated.
pub fn load_samples(
    tok: &Tokenizer,
    path: &Path,
    cfg: &SftConfig,
) -> Result<(Vec<Sample>, DataStats)> {
    let file = data::sft::read_sft(path, cfg.skip_bad_rows)?;
    let (samples, stats) = prepare(
        tok,
        path,
        file,
        cfg.max_seq_len,
        cfg.loss_on_all,
        cfg.skip_bad_rows,
    )?;
    tracing::info!(
        "{}: {} rows, {} skipped as bad, {} truncated to max_seq_len {} ({} of them dropped: \
         nothing left to train on), {} tokens ({} trained on)",
        path.display(),
        stats.rows,
        stats.skipped,
        stats.truncated,
        cfg.max_seq_len,
        stats.dropped,
        stats.tokens,
        stats.loss_tokens
    );
    Ok((samples, stats))
}

/// The files an SFT run writes besides the loop's.
pub const FILES: train::RunFiles = train::RunFiles {
    stage: "sft",
    plot: "loss.svg",
    series: &["loss", "eval_loss"],
};

/// `rudder sft` as a library call: checks the settings, writes `sft.toml` into the run folder,
/// loads `cfg.model` (frozen with LoRA) and trains it ([`train_sft`]).
pub fn run(cfg: &SftConfig, trainer: &TrainerConfig, opts: &LoadOptions) -> Result<SftOutcome> {
    cfg.validate()?;
    let pre = train::begin(cfg, trainer, opts)?;
    train_sft(pre, cfg, trainer)
}

/// Trains `pre` (loaded trainable for full fine-tuning, frozen for LoRA) as configured and
/// writes the model folder (full) or the PEFT adapter (LoRA), `loss.svg` and `sft_run.json`
/// into `trainer.out`; the loop itself writes checkpoints, `metrics.jsonl` and `summary.json`.
pub fn train_sft(pre: Pretrained, cfg: &SftConfig, trainer: &TrainerConfig) -> Result<SftOutcome> {
    cfg.validate()?;
    let read = |tok: &Tokenizer, p: &Path| load_samples(tok, p, cfg).map(|(s, st)| (s, Some(st)));
    let files = (cfg.data.as_deref(), cfg.eval_data.as_deref());
    let train::Prepared {
        mut model,
        tok,
        params,
        lora,
        train: (train, train_stats),
        eval: (eval, eval_stats),
    } = train::prepare(pre, cfg, trainer.seed, files, read)?;
    let packing = cfg.packing.then_some(cfg.max_seq_len);
    let rows = into_rows(train, packing);
    let eval_rows = into_rows(eval, packing);
    tracing::info!(
        rows = rows.len(),
        params = params.num_elements(),
        lora = lora.is_some(),
        "sft"
    );
    let train_rows = rows.len();
    model.checkpointing = trainer.gradient_checkpointing;
    let mut stage = SftStage::new(model, rows, eval_rows, tok.pad_id, trainer.batch_size);
    let base = cfg.model.as_deref().unwrap_or_default();
    let (summary, plot) = train::train_and_save(&mut stage, &params, trainer, &FILES, |s, out| {
        train::save_policy(&s.model, &tok, lora.as_ref(), base, out)
    })?;
    let outcome = SftOutcome {
        summary,
        train_data: train_stats.unwrap_or_default(),
        eval_data: eval_stats,
        train_rows,
        trainable_params: params.num_elements(),
        plot,
        model: stage.model,
    };
    train::write_record(&FILES, trainer, cfg, &outcome)?;
    Ok(outcome)
}
