//! One SFT run end to end: data, trainable parameters (full or LoRA), `train::run`, and the
//! outputs next to the loop's checkpoints and metrics.
use crate::config::SftConfig;
use crate::error::{Error, Result};
use crate::stage::{into_rows, SftStage};
use crate::tokenize::{prepare, DataStats, Sample};
use lm::{Pretrained, Tokenizer};
use std::path::{Path, PathBuf};
use train::{Params, TrainSummary, TrainerConfig};

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

/// Trains `pre` (loaded trainable for full fine-tuning, frozen for LoRA) as configured and
/// writes the model folder (full) or the PEFT adapter (LoRA) plus `loss.svg` into
/// `trainer.out`; the loop itself writes checkpoints, `metrics.jsonl` and `summary.json`.
pub fn train_sft(pre: Pretrained, cfg: &SftConfig, trainer: &TrainerConfig) -> Result<SftOutcome> {
    cfg.validate()?;
    let Pretrained {
        mut model,
        tokenizer: tok,
        params,
        ..
    } = pre;
    let data_path = cfg
        .data
        .as_deref()
        .ok_or_else(|| Error::config("data", "required"))?;
    let (train, train_stats) = load_samples(&tok, data_path, cfg)?;
    let (eval, eval_stats) = match &cfg.eval_data {
        Some(p) => {
            let (s, st) = load_samples(&tok, p, cfg)?;
            (s, Some(st))
        }
        None => (vec![], None),
    };
    let lora = cfg.lora()?;
    let vars = model.trainable_vars(lora.as_ref(), params, trainer.seed)?;
    let params = Params::new(vars)?;
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
    let summary = train::run(&mut stage, &params, trainer)?;
    let out = &trainer.out;
    match &lora {
        Some(spec) => {
            let base = cfg.model.clone().unwrap_or_default();
            lm::lora::save_adapter(&stage.model, spec, &base, out)?;
            lm::save::save_tokenizer(&stage.model, &tok, out)?;
        }
        None => lm::save::save_pretrained(&stage.model, &tok, out)?,
    }
    let plot = out.join("loss.svg");
    train::write_svg_plot(&out.join("metrics.jsonl"), &plot, &["loss", "eval_loss"])?;
    let outcome = SftOutcome {
        summary,
        train_data: train_stats,
        eval_data: eval_stats,
        train_rows,
        trainable_params: params.num_elements(),
        plot,
        model: stage.model,
    };
    write_run_config(out, cfg, trainer, &outcome)?;
    Ok(outcome)
}

/// `sft_run.json`: the resolved configs and the data statistics, for the record.
fn write_run_config(
    out: &Path,
    cfg: &SftConfig,
    trainer: &TrainerConfig,
    o: &SftOutcome,
) -> Result<()> {
    let v = serde_json::json!({
        "trainer": trainer,
        "sft": cfg,
        "train_data": o.train_data,
        "eval_data": o.eval_data,
        "train_rows": o.train_rows,
        "trainable_params": o.trainable_params,
    });
    let path = out.join("sft_run.json");
    let text = serde_json::to_string_pretty(&v).unwrap_or_default();
    std::fs::write(&path, text + "\n").map_err(|source| Error::Io { path, source })
}
