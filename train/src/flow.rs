//! The run flow every stage shares around [`crate::run`]: its trainable parameters (full or
//! LoRA), the loop, the trained model written into the run folder (a model folder or a PEFT
//! adapter), the plot of its metrics, and `<stage>_run.json`. A stage brings its data, its
//! loss and what it saves; the order and the files are the same for all.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Var;
use lm::lora::{LoraConfig, LoraSpec};
use lm::{CausalLm, LoadOptions, Pretrained, Tokenizer};
use serde::Serialize;

use crate::{Error, Input, Params, Result, Stage, TrainSummary, TrainerConfig};

/// What a stage's run writes besides the loop's own files.
#[derive(Clone, Copy, Debug)]
pub struct RunFiles {
    /// The stage's name: the record is `<stage>_run.json`, its config its `<stage>` key.
    pub stage: &'static str,
    /// The plot's file name in the run folder, e.g. `loss.svg`.
    pub plot: &'static str,
    /// The `metrics.jsonl` keys it plots.
    pub series: &'static [&'static str],
}

/// Before a stage loads anything: checks the loop's settings and that the stage's models and
/// files are there (named by their flags), creates the run folder and writes `<stage>.toml`
/// there, every resolved setting (reusable as `--config`).
pub fn start<S: StageSettings>(trainer: &TrainerConfig, cfg: &S) -> Result<()> {
    trainer.validate()?;
    crate::inputs::check_inputs(&cfg.inputs(), crate::inputs::flag)?;
    std::fs::create_dir_all(&trainer.out).map_err(Error::io(&trainer.out))?;
    crate::settings::write_resolved(S::FILES.stage, trainer, cfg)
}

/// What the run flow needs of a stage's settings (its config struct).
pub trait StageSettings: Serialize {
    /// The stage's name and the files its run writes.
    const FILES: RunFiles;
    /// The model to train (the `model` setting, required).
    fn model(&self) -> Option<&str>;
    /// The settings a run cannot do without: `model` and its rows (`data`; PPO's `prompts`).
    const REQUIRED: &'static [&'static str];
    /// Checks that every [`StageSettings::REQUIRED`] setting is among [`StageSettings::inputs`]
    /// and not empty; the error names the flag that was left out.
    fn require_inputs(&self) -> Result<()> {
        let given = self.inputs();
        for key in Self::REQUIRED {
            if !given
                .iter()
                .any(|i| i.key() == *key && !i.value().is_empty())
            {
                required::<str>(None, Self::FILES.stage, key)?;
            }
        }
        Ok(())
    }
    /// The models and files it reads, each with its setting: [`start`] checks them before
    /// anything loads, and the pipeline before its first stage.
    fn inputs(&self) -> Vec<Input<'_>>;
    /// Its LoRA settings (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`).
    fn lora_settings(&self) -> &LoraConfig;
    /// The checked adapter spec when `lora_r` is set; an error names the stage and the field.
    fn lora(&self) -> Result<Option<LoraSpec>> {
        let stage = Self::FILES.stage;
        (self.lora_settings().spec()).map_err(|(field, why)| Error::setting(stage, field, why))
    }
}

/// [`start`], then the model the stage trains: its `model` loaded as [`load_policy`] does.
pub fn begin<S: StageSettings>(
    cfg: &S,
    trainer: &TrainerConfig,
    opts: &LoadOptions,
) -> Result<Pretrained> {
    start(trainer, cfg)?;
    let lora = cfg.lora()?;
    let spec = required(cfg.model(), S::FILES.stage, "model")?;
    load_policy(spec, opts, lora.as_ref())
}

/// Loads the model a stage trains: its weights trainable for full training, frozen (plain
/// tensors, no optimizer state) when LoRA adapters are trained instead.
pub fn load_policy(spec: &str, opts: &LoadOptions, lora: Option<&LoraSpec>) -> Result<Pretrained> {
    let opts = LoadOptions {
        trainable: lora.is_none(),
        ..opts.clone()
    };
    load_model(spec, &opts)
}

/// `lm::load`, the error naming the model.
pub fn load_model(spec: &str, opts: &LoadOptions) -> Result<Pretrained> {
    lm::load(spec, opts).map_err(|e| Error::Model {
        spec: spec.into(),
        source: Box::new(e),
    })
}

/// A stage's frozen reference model. `ref_spec` when given, loaded frozen; it must share the
/// policy's vocabulary (the error names the stage's `ref` setting). Otherwise the starting model:
/// with LoRA the policy itself with its adapters switched off (every weight shared, no second
/// copy), without it `model_spec` loaded again, frozen.
pub fn load_reference(
    stage: &'static str,
    policy: &CausalLm,
    ref_spec: Option<&str>,
    model_spec: &str,
    lora: bool,
    opts: &LoadOptions,
) -> Result<CausalLm> {
    if ref_spec.is_none() && lora {
        let mut base = policy.clone();
        base.set_adapters_enabled(false);
        return Ok(base);
    }
    let spec = ref_spec.unwrap_or(model_spec);
    let frozen = LoadOptions {
        trainable: false,
        ..opts.clone()
    };
    let reference = load_model(spec, &frozen)?.model;
    match policy.vocab_mismatch(&reference) {
        Some(why) => Err(Error::setting(stage, "ref", format!("`{spec}`: {why}"))),
        None => Ok(reference),
    }
}

/// What a stage that trains a policy between two evaluations produced (DPO, KTO), also written
/// to `<stage>_run.json`; `D` is its data statistics.
#[derive(Debug, Serialize)]
pub struct PolicyOutcome<D> {
    pub summary: TrainSummary,
    pub train_data: D,
    pub eval_data: Option<D>,
    /// Eval metrics before the first step and after the last.
    pub eval_before: BTreeMap<String, f64>,
    pub eval_after: BTreeMap<String, f64>,
    pub trainable_params: usize,
    /// The stage's metrics over steps.
    pub plot: PathBuf,
    /// The trained policy (adapters attached with LoRA).
    #[serde(skip)]
    pub model: CausalLm,
}

/// What [`train_and_evaluate`] returns: the loop's summary, the plot, and the evaluation before
/// the first step and after the last.
pub struct Evaluated {
    pub summary: TrainSummary,
    pub plot: PathBuf,
    pub eval_before: BTreeMap<String, f64>,
    pub eval_after: BTreeMap<String, f64>,
}

/// [`train_and_save`] between two evaluations of the stage's eval set, each passed to `log`
/// (`"before training"`, `"after training"`). The loop's own last evaluation is reused when it
/// ran one (`eval_every`) instead of evaluating the same weights twice.
pub fn train_and_evaluate<S: Stage>(
    stage: &mut S,
    params: &Params,
    trainer: &TrainerConfig,
    files: &RunFiles,
    save: impl FnOnce(&S, &Path) -> Result<()>,
    log: impl Fn(&str, &BTreeMap<String, f64>),
) -> Result<Evaluated> {
    let eval_before = stage.evaluate()?;
    log("before training", &eval_before);
    let (summary, plot) = train_and_save(stage, params, trainer, files, save)?;
    let eval_after = match trainer.eval_every {
        Some(_) if !summary.eval.is_empty() => summary.eval.clone(),
        _ => stage.evaluate()?,
    };
    log("after training", &eval_after);
    Ok(Evaluated {
        summary,
        plot,
        eval_before,
        eval_after,
    })
}

/// The parameters the optimizer updates: the LoRA adapters attached to `model` when `lora` is
/// set (the base weights `full` stay frozen), else every weight in `full`.
pub fn trainable(
    model: &mut CausalLm,
    lora: Option<&LoraSpec>,
    full: Vec<(String, Var)>,
    seed: u64,
) -> Result<Params> {
    Params::new(model.trainable_vars(lora, full, seed)?)
}

/// Reads the training file (`data`, a required setting) and, when given, the evaluation file
/// with the same reader; no evaluation file reads as the reader's empty value.
pub fn read_splits<T: Default>(
    stage: &'static str,
    data: Option<&Path>,
    eval: Option<&Path>,
    read: impl Fn(&Path) -> Result<T>,
) -> Result<(T, T)> {
    let read = |p: &Path| read(p).map_err(skip_hint);
    let train = read(required(data, stage, "data")?)?;
    Ok((train, eval.map(read).transpose()?.unwrap_or_default()))
}

/// What a bad row's error adds: the setting that skips such rows instead of stopping.
pub const SKIP_HINT: &str =
    "(--skip-bad-rows, `skip_bad_rows = true` in a config, skips and counts bad rows)";

/// A bad row's error with [`SKIP_HINT`]; any other error as it is.
fn skip_hint(e: Error) -> Error {
    let hinted = |reason: String| format!("{reason} {SKIP_HINT}");
    match e {
        Error::Row { path, line, reason } => Error::Row {
            path,
            line,
            reason: hinted(reason),
        },
        Error::Lm(b) => match *b {
            lm::Error::Data { path, line, reason } => Error::Lm(Box::new(lm::Error::Data {
                path,
                line,
                reason: hinted(reason),
            })),
            other => Error::Lm(Box::new(other)),
        },
        other => other,
    }
}

/// Where a stage's training starts: the model and its tokenizer, the parameters the optimizer
/// updates (LoRA adapters attached when the settings ask for them), the training and the
/// evaluation data.
pub struct Prepared<T> {
    pub model: CausalLm,
    pub tok: Tokenizer,
    pub params: Params,
    pub lora: Option<LoraSpec>,
    pub train: T,
    pub eval: T,
}

/// Reads the training file (`data`, required) and the evaluation file (when given) with
/// `read`, then attaches the adapters `cfg` asks for and collects the trainable parameters.
pub fn prepare<S: StageSettings, T: Default>(
    pre: Pretrained,
    cfg: &S,
    seed: u64,
    (data, eval): (Option<&Path>, Option<&Path>),
    read: impl Fn(&Tokenizer, &Path) -> Result<T>,
) -> Result<Prepared<T>> {
    let Pretrained {
        mut model,
        tokenizer: tok,
        params,
        ..
    } = pre;
    let (train, eval) = read_splits(S::FILES.stage, data, eval, |p| read(&tok, p))?;
    let lora = cfg.lora()?;
    let params = trainable(&mut model, lora.as_ref(), params, seed)?;
    Ok(Prepared {
        model,
        tok,
        params,
        lora,
        train,
        eval,
    })
}

/// A required setting that was left out: the error names the stage's config field.
pub fn required<'a, T: ?Sized>(
    value: Option<&'a T>,
    stage: &'static str,
    field: &str,
) -> Result<&'a T> {
    value.ok_or_else(|| Error::setting(stage, field, format!("required (--{})", flag(field))))
}

fn flag(field: &str) -> String {
    field.replace('_', "-")
}

/// Runs the loop, then `save(stage, out)` writes the trained model into the run folder and the
/// plot is drawn from `metrics.jsonl`. Returns the loop's summary and the plot's path.
pub fn train_and_save<S: Stage>(
    stage: &mut S,
    params: &Params,
    trainer: &TrainerConfig,
    files: &RunFiles,
    save: impl FnOnce(&S, &Path) -> Result<()>,
) -> Result<(TrainSummary, PathBuf)> {
    let out = &trainer.out;
    std::fs::create_dir_all(out).map_err(Error::io(out))?;
    let summary = crate::run(stage, params, trainer)?;
    save(stage, out)?;
    let plot = out.join(files.plot);
    crate::write_svg_plot(&out.join("metrics.jsonl"), &plot, files.series)?;
    Ok((summary, plot))
}

/// Writes a trained causal LM: the PEFT adapter of `base` plus the tokenizer with `lora`, the
/// whole model folder without.
pub fn save_policy(
    model: &CausalLm,
    tok: &Tokenizer,
    lora: Option<&LoraSpec>,
    base: &str,
    out: &Path,
) -> Result<()> {
    match lora {
        Some(spec) => {
            lm::lora::save_adapter(model, spec, base, out)?;
            lm::save::save_tokenizer(model, tok, out)?;
        }
        None => lm::save::save_pretrained(model, tok, out)?,
    }
    Ok(())
}

/// `<out>/<stage>_run.json`: the resolved loop and stage settings and what the run produced,
/// for the record.
pub fn write_record(
    files: &RunFiles,
    trainer: &TrainerConfig,
    cfg: &impl Serialize,
    outcome: &impl Serialize,
) -> Result<()> {
    let path = trainer.out.join(format!("{}_run.json", files.stage));
    let parts = [
        ("trainer", serde_json::to_value(trainer)),
        (files.stage, serde_json::to_value(cfg)),
        ("outcome", serde_json::to_value(outcome)),
    ];
    let mut record = serde_json::Map::new();
    for (key, value) in parts {
        record.insert(key.into(), value.map_err(Error::json(&path))?);
    }
    let text = serde_json::to_string_pretty(&record).map_err(Error::json(&path))?;
    std::fs::write(&path, text + "\n").map_err(Error::io(&path))
}
