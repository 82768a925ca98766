//! One DPO run end to end: data, trainable parameters (full or LoRA), the reference (frozen
//! copy, the LoRA base, or precomputed), `train::run`, and the outputs in the run folder.
use crate::config::DpoConfig;
use crate::prepare::{fingerprint, load_pairs, read_cache, write_cache, DataStats, RefCache};
use crate::stage::DpoStage;
use crate::{Error, Result};
use lm::{LoadOptions, Pretrained, Tokenizer};
use std::collections::BTreeMap;
use std::path::Path;
use train::TrainerConfig;

/// What a run produced (also written to `dpo_run.json`).
pub type DpoOutcome = train::PolicyOutcome<DataStats>;

/// The files a DPO run writes besides the loop's.
pub const FILES: train::RunFiles = train::RunFiles {
    stage: "dpo",
    plot: "dpo.svg",
    series: &[
        "rewards/margins",
        "rewards/accuracies",
        "eval_rewards/margins",
        "eval_rewards/accuracies",
    ],
};

/// `rudder dpo` as a library call: checks the settings, writes `dpo.toml` into the run folder,
/// loads `cfg.model` (frozen with LoRA) and trains it ([`train_dpo`]).
pub fn run(cfg: &DpoConfig, trainer: &TrainerConfig, opts: &LoadOptions) -> Result<DpoOutcome> {
    cfg.validate()?;
    let pre = train::begin(cfg, trainer, opts)?;
    train_dpo(pre, opts, cfg, trainer)
}

/// Trains `pre` (loaded trainable for full fine-tuning, frozen for LoRA) with DPO. `opts` are
/// used to load the reference (always frozen). Writes the model folder (full) or the PEFT
/// adapter (LoRA), `dpo.svg` and `dpo_run.json` into `trainer.out`.
pub fn train_dpo(
    pre: Pretrained,
    opts: &LoadOptions,
    cfg: &DpoConfig,
    trainer: &TrainerConfig,
) -> Result<DpoOutcome> {
    cfg.validate()?;
    let read = |tok: &Tokenizer, p: &Path| load_pairs(tok, p, cfg).map(|(s, st)| (s, Some(st)));
    let files = (cfg.data.as_deref(), cfg.eval_data.as_deref());
    let train::Prepared {
        model,
        tok,
        params,
        lora,
        train: (train_set, train_stats),
        eval: (eval_set, eval_stats),
    } = train::prepare(pre, cfg, trainer.seed, files, read)?;
    std::fs::create_dir_all(&trainer.out).map_err(Error::io(&trainer.out))?;
    let mut stage = DpoStage {
        model,
        reference: None,
        train: train_set,
        eval: eval_set,
        cfg: cfg.clone(),
        pad_id: tok.pad_id,
        eval_batch_size: trainer.batch_size,
    };
    setup_reference(&mut stage, opts, cfg, &trainer.out)?;
    // After the reference is set up: a LoRA reference is a clone of the policy and must not
    // checkpoint (it has nothing to differentiate).
    stage.model.checkpointing = trainer.gradient_checkpointing;
    tracing::info!(
        pairs = stage.train.len(),
        params = params.num_elements(),
        lora = lora.is_some(),
        "dpo"
    );
    let base = cfg.model.as_deref().unwrap_or_default();
    let save =
        |s: &DpoStage, out: &Path| train::save_policy(&s.model, &tok, lora.as_ref(), base, out);
    let run = train::train_and_evaluate(&mut stage, &params, trainer, &FILES, save, log_eval)?;
    let outcome = DpoOutcome {
        summary: run.summary,
        train_data: train_stats.unwrap_or_default(),
        eval_data: eval_stats,
        eval_before: run.eval_before,
        eval_after: run.eval_after,
        trainable_params: params.num_elements(),
        plot: run.plot,
        model: stage.model,
    };
    train::write_record(&FILES, trainer, cfg, &outcome)?;
    Ok(outcome)
}

fn log_eval(when: &str, m: &BTreeMap<String, f64>) {
    if let (Some(acc), Some(margin)) = (m.get("rewards/accuracies"), m.get("rewards/margins")) {
        tracing::info!("eval {when}: rewards/accuracies {acc:.4}, rewards/margins {margin:.4}");
    }
}

/// The reference: none when no loss reads it (simpo, sft); else the cached precomputed sums, or a frozen model (the
/// LoRA base when no `ref` is given) that `precompute_ref` turns into sums and frees.
fn setup_reference(
    stage: &mut DpoStage,
    opts: &LoadOptions,
    cfg: &DpoConfig,
    out: &Path,
) -> Result<()> {
    if !cfg.uses_reference() {
        return Ok(());
    }
    let spec = cfg
        .ref_model
        .clone()
        .or_else(|| cfg.model.clone())
        .unwrap_or_default();
    let lora_base = cfg.ref_model.is_none() && cfg.lora.lora_r.is_some();
    let label = if lora_base {
        format!("{spec} (LoRA base)")
    } else {
        spec.clone()
    };
    let cache_path = out.join("ref_logps.json");
    let fp = fingerprint(&label, &[&stage.train, &stage.eval]);
    if cfg.precompute_ref {
        if let Some(c) = read_cache(&cache_path, &fp) {
            tracing::info!("reference log-probs from {}", cache_path.display());
            stage.train.ref_logps = Some(c.train);
            stage.eval.ref_logps = Some(c.eval);
            return Ok(());
        }
    }
    let (model, lora) = (
        cfg.model.as_deref().unwrap_or_default(),
        cfg.lora.lora_r.is_some(),
    );
    let reference = cfg.ref_model.as_deref();
    let loaded = train::load_reference(FILES.stage, &stage.model, reference, model, lora, opts)?;
    stage.reference = Some(loaded);
    if cfg.precompute_ref {
        let started = std::time::Instant::now();
        stage.precompute_reference()?;
        let cache = RefCache {
            fingerprint: fp,
            reference: label,
            train: stage.train.ref_logps.clone().unwrap_or_default(),
            eval: stage.eval.ref_logps.clone().unwrap_or_default(),
        };
        write_cache(&cache_path, &cache)?;
        tracing::info!(
            "precomputed reference log-probs in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
