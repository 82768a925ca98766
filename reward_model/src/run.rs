//! `rudder reward train` as a library call: load, attach LoRA if asked, read the pairs, run the
//! shared loop, evaluate, and write the reward model folder.
use crate::config::RewardConfig;
use crate::model::{HeadInit, RewardModel};
use crate::pairs::{load_pairs, PairData};
use crate::stage::RewardStage;
use crate::{Error, Result};
use lm::LoadOptions;
use std::collections::BTreeMap;
use std::path::Path;
use train::{Stage, StageSettings, TrainSummary, TrainerConfig};

/// What a training run produced (the model folder is `trainer.out`).
#[derive(Debug)]
pub struct TrainOutcome {
    pub summary: TrainSummary,
    /// Evaluation of the final model (empty without `eval_data`).
    pub eval: BTreeMap<String, f64>,
    pub train_pairs: usize,
    pub eval_pairs: usize,
    pub trainable_params: usize,
    pub stage: RewardStage,
}

fn read(path: &Path, model: &RewardModel, cfg: &RewardConfig) -> Result<PairData> {
    let data = load_pairs(path, &model.tokenizer, cfg)?;
    tracing::info!("{}", data.summary(path));
    Ok(data)
}

/// The files a reward-model run writes besides the loop's (and `eval.json`).
pub const FILES: train::RunFiles = train::RunFiles {
    stage: "reward",
    plot: "reward.svg",
    series: &["loss", "accuracy", "eval_accuracy"],
};

/// Builds the stage: backbone (trainable, or frozen with LoRA adapters), head, pairs.
pub fn build_stage(
    cfg: &RewardConfig,
    trainer: &TrainerConfig,
    opts: &LoadOptions,
) -> Result<RewardStage> {
    cfg.validate()?;
    let lora = cfg.lora()?;
    // With LoRA the base weights stay plain tensors (no gradient, no optimizer state).
    let opts = LoadOptions {
        trainable: lora.is_none(),
        ..opts.clone()
    };
    let spec = cfg.model.as_deref().unwrap_or_default();
    let init = HeadInit {
        seed: cfg.head_seed,
        std: None,
    };
    let mut model = RewardModel::load_with(spec, &opts, Some(init))?;
    model.score_batch_size = cfg.eval_batch_size;
    model.backbone.checkpointing = trainer.gradient_checkpointing;
    let extra_params = match &lora {
        Some(s) => model.backbone.attach_lora(s, trainer.seed)?,
        None => vec![],
    };
    let (data, eval) = (cfg.data.as_deref(), cfg.eval_data.as_deref());
    let (train, eval) =
        train::read_splits(FILES.stage, data, eval, |p| Ok(read(p, &model, cfg)?.pairs))?;
    let groups = cfg.group_pairs.then(|| crate::pairs::group_indices(&train));
    if let Some(g) = &groups {
        tracing::info!(
            groups = g.len(),
            pairs = train.len(),
            "one training example per group"
        );
    }
    Ok(RewardStage {
        model,
        groups,
        train,
        eval,
        use_margin: cfg.use_margin,
        center_rewards_coefficient: cfg.center_rewards_coefficient,
        extra_params,
    })
}

/// `rudder reward train` as a library call: checks the settings, writes `reward.toml` into the
/// run folder, then trains ([`train_reward`]).
pub fn run(
    cfg: &RewardConfig,
    trainer: &TrainerConfig,
    opts: &LoadOptions,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    train::start(trainer, cfg)?;
    train_reward(cfg, trainer, opts)
}

/// Trains a reward model and writes it (LoRA merged in) to `trainer.out`, next to the
/// checkpoints, `metrics.jsonl`, `summary.json`, plus `eval.json` and `reward_run.json`.
pub fn train_reward(
    cfg: &RewardConfig,
    trainer: &TrainerConfig,
    opts: &LoadOptions,
) -> Result<TrainOutcome> {
    let mut stage = build_stage(cfg, trainer, opts)?;
    let params = stage.params()?;
    tracing::info!(
        pairs = stage.train.len(),
        eval_pairs = stage.eval.len(),
        params = params.num_elements(),
        lora = cfg.lora.lora_r.is_some(),
        "reward model"
    );
    let (summary, _plot) =
        train::train_and_save(&mut stage, &params, trainer, &FILES, |s, out| {
            s.model.save(out)
        })?;
    // The loop evaluates at the end only with eval_every; the final numbers are always wanted.
    let eval = if trainer.eval_every.is_some() && !summary.eval.is_empty() {
        summary.eval.clone()
    } else {
        stage.evaluate()?
    };
    let outcome = TrainOutcome {
        summary,
        eval,
        train_pairs: stage.train.len(),
        eval_pairs: stage.eval.len(),
        trainable_params: params.num_elements(),
        stage,
    };
    let record = serde_json::json!({
        "summary": outcome.summary,
        "eval": outcome.eval,
        "train_pairs": outcome.train_pairs,
        "eval_pairs": outcome.eval_pairs,
        "trainable_params": outcome.trainable_params,
    });
    train::write_record(&FILES, trainer, cfg, &record)?;
    write_eval(&trainer.out, &outcome.eval)?;
    Ok(outcome)
}

/// `eval.json`: the final evaluation (accuracy, margin, reward statistics on `eval_data`).
fn write_eval(out: &Path, eval: &BTreeMap<String, f64>) -> Result<()> {
    let path = out.join("eval.json");
    let text = serde_json::to_string_pretty(eval).map_err(Error::json(&path))?;
    std::fs::write(&path, text + "\n").map_err(Error::io(&path))
}
