//! One KTO run end to end: data, trainable parameters (full or LoRA), the reference (frozen
//! copy, the LoRA base, or precomputed), `train::run`, and the outputs in the run folder.
use crate::config::KtoConfig;
use crate::prepare::{load_rows, DataStats};
use crate::stage::KtoStage;
use crate::{Error, Result};
use lm::{LoadOptions, Pretrained, Tokenizer};
use std::collections::BTreeMap;
use std::path::Path;
use train::TrainerConfig;

/// What a run produced (also written to `kto_run.json`).
pub type KtoOutcome = train::PolicyOutcome<DataStats>;

/// The files a KTO run writes besides the loop's.
pub const FILES: train::RunFiles = train::RunFiles {
    stage: "kto",
    plot: "kto.svg",
    series: &["rewards/margins", "kl", "eval_rewards/margins", "eval_kl"],
};

/// `rudder kto` as a library call: checks the settings, writes `kto.toml` into the run folder,
/// loads `cfg.model` (frozen with LoRA) and trains it ([`train_kto`]).
pub fn run(cfg: &KtoConfig, trainer: &TrainerConfig, opts: &LoadOptions) -> Result<KtoOutcome> {
    check(cfg, trainer)?;
    let pre = train::begin(cfg, trainer, opts)?;
    train_kto(pre, opts, cfg, trainer)
}

/// Trains `pre` (loaded trainable for full fine-tuning, frozen for LoRA) with KTO. `opts` are
/// used to load the reference (always frozen). Writes the model folder (full) or the PEFT
/// adapter (LoRA), `kto.svg` and `kto_run.json` into `trainer.out`.
pub fn train_kto(
    pre: Pretrained,
    opts: &LoadOptions,
    cfg: &KtoConfig,
    trainer: &TrainerConfig,
) -> Result<KtoOutcome> {
    check(cfg, trainer)?;
    let bs = trainer.batch_size;
    let read = |tok: &Tokenizer, p: &Path| load_rows(tok, p, cfg, bs).map(|(s, st)| (s, Some(st)));
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
    let sets = (train_set, eval_set);
    let mut stage = KtoStage::new(model, sets, cfg, tok.pad_id, bs);
    setup_reference(&mut stage, opts, cfg)?;
    // After the reference is set up: a LoRA reference is a clone of the policy and must not
    // checkpoint (it has nothing to differentiate).
    stage.model.checkpointing = trainer.gradient_checkpointing;
    let (rows, n) = (stage.train.len(), params.num_elements());
    tracing::info!(rows, params = n, lora = lora.is_some(), "kto");
    let base = cfg.model.as_deref().unwrap_or_default();
    let save =
        |s: &KtoStage, out: &Path| train::save_policy(&s.model, &tok, lora.as_ref(), base, out);
    let run = train::train_and_evaluate(&mut stage, &params, trainer, &FILES, save, log_eval)?;
    let outcome = KtoOutcome {
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

/// The stage's settings and the loop settings KTO needs.
fn check(cfg: &KtoConfig, trainer: &TrainerConfig) -> Result<()> {
    cfg.validate()?;
    cfg.validate_trainer(trainer)
}

fn log_eval(when: &str, m: &BTreeMap<String, f64>) {
    if let (Some(loss), Some(kl)) = (m.get("loss"), m.get("kl")) {
        let margin = m.get("rewards/margins").copied().unwrap_or(f64::NAN);
        tracing::info!("eval {when}: loss {loss:.4}, rewards/margins {margin:.4}, kl {kl:.4}");
    }
}

/// The reference: a frozen model (the LoRA base when no `ref` is given) that `precompute_ref`
/// turns into sums and frees.
fn setup_reference(stage: &mut KtoStage, opts: &LoadOptions, cfg: &KtoConfig) -> Result<()> {
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
        tracing::info!(
            "precomputed reference log-probs in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
