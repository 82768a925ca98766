//! The training and compare stages. Each one: merge the pipeline's defaults into its section,
//! skip when its marker holds the same section, else run the stage with its config and write
//! the marker.
use crate::{Error, PipelineConfig, Result};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;
use train::{Input, StageSettings, TrainerConfig};

pub struct Ctx<'a> {
    /// The pipeline config's path, for messages.
    pub file: String,
    pub out: PathBuf,
    pub load: lm::LoadOptions,
    /// Keep the trainers' `checkpoint-*` folders after a stage completes.
    pub keep_checkpoints: bool,
    pub say: &'a dyn Fn(&str),
}

const MARKER: &str = ".rudder-stage.json";

impl Ctx<'_> {
    pub fn dir(&self, stage: &str) -> PathBuf {
        self.out.join(stage)
    }

    pub fn config(&self, reason: impl Into<String>) -> Error {
        Error::Config {
            file: self.file.clone(),
            reason: reason.into(),
        }
    }

    fn failed(&self, stage: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Stage {
            file: self.file.clone(),
            stage: stage.into(),
            source: Box::new(e),
        }
    }
}

/// Fills `key` unless the section sets it; `out` belongs to the pipeline.
pub fn section(
    ctx: &Ctx,
    stage: &str,
    t: Option<&toml::Table>,
    defaults: &[(&str, toml::Value)],
) -> Result<toml::Table> {
    let mut t = t.cloned().unwrap_or_default();
    if t.contains_key("out") {
        let dir = ctx.dir(stage);
        return Err(ctx.config(format!(
            "[{stage}] field `out`: set by the pipeline ({})",
            dir.display()
        )));
    }
    for (k, v) in defaults {
        t.entry(k.to_string()).or_insert_with(|| v.clone());
    }
    Ok(t)
}

pub fn s(v: impl AsRef<str>) -> toml::Value {
    toml::Value::String(v.as_ref().into())
}

pub fn p(v: &Path) -> toml::Value {
    s(v.display().to_string())
}

/// Whether the stage finished before with this exact section; a different section is an
/// error (its outputs would no longer match the config).
pub fn stage_done(ctx: &Ctx, stage: &str, t: &toml::Table) -> Result<bool> {
    let marker = ctx.dir(stage).join(MARKER);
    let Ok(text) = std::fs::read_to_string(&marker) else {
        return Ok(false);
    };
    let old: Value = serde_json::from_str(&text)?;
    if old["config"] != serde_json::to_value(t)? {
        return Err(ctx.config(format!(
            "stage [{stage}] finished earlier with a different config; delete {} to run it again",
            ctx.dir(stage).display()
        )));
    }
    (ctx.say)(&format!(
        "pipeline: [{stage}] already complete ({}); skipping",
        ctx.dir(stage).display()
    ));
    Ok(true)
}

/// Marks `stage` complete with its section, its output and its wall time since `started`.
pub fn stage_mark(
    ctx: &Ctx,
    stage: &str,
    t: &toml::Table,
    output: &str,
    started: Instant,
) -> Result<()> {
    let marker = ctx.dir(stage).join(MARKER);
    let wall_s = started.elapsed().as_secs_f64();
    let v = serde_json::json!({ "stage": stage, "config": t, "output": output, "wall_s": wall_s });
    std::fs::write(&marker, serde_json::to_string_pretty(&v)?).map_err(Error::io(&marker))
}

/// The wall time of every completed stage, this run's and earlier runs' (loading, scoring and
/// saving included, not only the metered loop or sampling); None when a marker predates the
/// `wall_s` field.
pub fn wall_s(ctx: &Ctx, stages: &[&str]) -> Option<f64> {
    let mut total = 0.0;
    for stage in stages {
        let Ok(text) = std::fs::read_to_string(ctx.dir(stage).join(MARKER)) else {
            continue;
        };
        let v: Value = serde_json::from_str(&text).ok()?;
        total += v["wall_s"].as_f64()?;
    }
    Some(total)
}

fn output_of(ctx: &Ctx, stage: &str) -> Result<String> {
    let marker = ctx.dir(stage).join(MARKER);
    let text = std::fs::read_to_string(&marker).map_err(Error::io(&marker))?;
    let v: Value = serde_json::from_str(&text)?;
    v["output"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| ctx.config(format!("{}: no `output`", marker.display())))
}

fn json_table(t: &toml::Table) -> Result<Map<String, Value>> {
    match serde_json::to_value(t)? {
        Value::Object(o) => Ok(o),
        _ => Ok(Map::new()),
    }
}

/// A stage section as the loop's and the stage's settings, writing into the stage's folder.
fn settings<S>(ctx: &Ctx, stage: &str, t: &toml::Table) -> Result<(TrainerConfig, S)>
where
    S: DeserializeOwned + Serialize + Default,
{
    let mut table = json_table(t)?;
    let out = ctx.dir(stage).display().to_string();
    table.insert("out".into(), Value::String(out));
    Ok(train::settings::resolve_table(table, &ctx.file, stage)?)
}

/// A finished stage is never resumed (the marker skips it), and a checkpoint holds the weights
/// plus two AdamW moments: 3x the model on disk per stage.
fn drop_checkpoints(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(Error::io(dir))?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("checkpoint-") && e.path().is_dir() {
            std::fs::remove_dir_all(e.path()).map_err(Error::io(e.path()))?;
        } else if name == "latest" {
            std::fs::remove_file(e.path()).ok();
        }
    }
    Ok(())
}

/// A LoRA run saves an adapter; later stages need a full model, so it is merged into `merged/`.
fn full_model(ctx: &Ctx, stage: &str, base: &str) -> Result<String> {
    let dir = ctx.dir(stage);
    if !dir.join("adapter_config.json").exists() {
        return Ok(dir.display().to_string());
    }
    let merged = dir.join("merged");
    lm::save::merge_adapter(base, &dir, &merged, &ctx.load)?;
    Ok(merged.display().to_string())
}

/// Runs a trainer stage unless its marker says it is done: `run` trains from the section and
/// returns the loop's summary; the output is the model folder (a LoRA adapter merged).
fn trainer_stage(
    ctx: &Ctx,
    stage: &str,
    t: toml::Table,
    base: &str,
    run: impl FnOnce(&toml::Table) -> Result<train::TrainSummary>,
) -> Result<String> {
    if stage_done(ctx, stage, &t)? {
        return output_of(ctx, stage);
    }
    let started = Instant::now();
    (ctx.say)(&format!("pipeline: [{stage}] running"));
    let s = run(&t).map_err(|e| ctx.failed(stage, e))?;
    (ctx.say)(&format!(
        "pipeline: [{stage}] {} steps, final loss {:.4}, {:.0} tokens/s; wrote {}",
        s.steps,
        s.final_loss.unwrap_or(f64::NAN),
        s.tokens_per_s,
        ctx.dir(stage).display()
    ));
    let out = full_model(ctx, stage, base)?;
    if !ctx.keep_checkpoints {
        drop_checkpoints(&ctx.dir(stage))?;
    }
    stage_mark(ctx, stage, &t, &out, started)?;
    Ok(out)
}

/// Parses every stage section, then checks every model and file the config names, before any
/// stage runs: a typo in `[compare]` or a missing model does not wait for training to finish.
/// Model and data paths the pipeline fills in are placeholders here (an earlier stage writes
/// them).
pub fn check(ctx: &Ctx, cfg: &PipelineConfig) -> Result<()> {
    sections(ctx, cfg, &mut |_, _, _| Ok(()))?;
    let start = [Input::Model {
        key: "model",
        spec: &cfg.model,
    }];
    given(ctx, "", None, &start)?;
    if let Some(file) = cfg.preferences.as_ref().and_then(|p| p.file.as_deref()) {
        given(
            ctx,
            "preferences",
            None,
            &[Input::File {
                key: "file",
                path: file,
            }],
        )?;
    }
    // A stage without a section names no inputs of its own (the pipeline fills them in).
    sections(ctx, cfg, &mut |stage, t, inputs| match t {
        Some(t) => given(ctx, stage, Some(t), inputs),
        None => Ok(()),
    })
}

/// What `visit` gets: a stage, its section as written, and the inputs its settings name.
type Visit<'v> = dyn FnMut(&str, Option<&toml::Table>, &[Input]) -> Result<()> + 'v;

/// Parses and checks each stage section's settings, handing its inputs to `visit`.
fn sections(ctx: &Ctx, cfg: &PipelineConfig, visit: &mut Visit) -> Result<()> {
    // Later stages start from the SFT output, which has the starting model's architecture.
    let placeholders = [("model", s(&cfg.model)), ("data", s("prefs.jsonl"))];
    let named = |stage: &str, e: train::Error| ctx.config(format!("[{stage}] {e}"));
    if let Some(t) = &cfg.sft {
        let (tr, c): (TrainerConfig, sft::SftConfig) =
            parse_section(ctx, "sft", Some(t), &placeholders[..1])?;
        tr.validate()
            .and_then(|_| c.validate())
            .map_err(|e| named("sft", e))?;
        visit("sft", Some(t), &c.inputs())?;
    }
    if let Some(t) = &cfg.reward {
        let (tr, c): (TrainerConfig, reward_model::RewardConfig) =
            parse_section(ctx, "reward", Some(t), &placeholders)?;
        tr.validate()
            .and_then(|_| c.validate())
            .map_err(|e| named("reward", e))?;
        visit("reward", Some(t), &c.inputs())?;
    }
    check_policy(ctx, cfg, &placeholders, visit)?;
    if let Some(t) = &cfg.candidates {
        let c = crate::labels::candidate_settings(ctx, &section(ctx, "candidates", Some(t), &[])?)?;
        visit("candidates", Some(t), &c.inputs())?;
    }
    if cfg
        .compare
        .as_ref()
        .is_some_and(|t| t.contains_key("models"))
    {
        return Err(
            ctx.config("[compare] field `models`: set by the pipeline (base, sft, aligned)")
        );
    }
    let c = compare_settings(ctx, &section(ctx, "compare", cfg.compare.as_ref(), &[])?)?;
    visit("compare", cfg.compare.as_ref(), &c.inputs())
}

/// The policy section of `policy = "dpo" | "ppo"`, as [`sections`] does the others.
fn check_policy(
    ctx: &Ctx,
    cfg: &PipelineConfig,
    placeholders: &[(&str, toml::Value)],
    visit: &mut Visit,
) -> Result<()> {
    let named = |stage: &str, e: train::Error| ctx.config(format!("[{stage}] {e}"));
    match cfg.policy.as_str() {
        "dpo" => {
            let (tr, c): (TrainerConfig, dpo::DpoConfig) =
                parse_section(ctx, "dpo", cfg.dpo.as_ref(), placeholders)?;
            tr.validate()
                .and_then(|_| c.validate())
                .map_err(|e| named("dpo", e))?;
            visit("dpo", cfg.dpo.as_ref(), &c.inputs())
        }
        "ppo" => {
            let reward = cfg.reward.as_ref().map(|_| "reward");
            let defaults = ppo_defaults(cfg.ppo.as_ref(), &cfg.model, reward);
            let (tr, c): (TrainerConfig, ppo::PpoConfig) =
                parse_section(ctx, "ppo", cfg.ppo.as_ref(), &defaults)?;
            tr.validate()
                .and_then(|_| c.validate(&tr))
                .map_err(|e| named("ppo", e))?;
            visit("ppo", cfg.ppo.as_ref(), &c.inputs())
        }
        other => Err(ctx.config(format!("field `policy`: `{other}` is not one of dpo, ppo"))),
    }
}

/// Checks the inputs the config itself names: with a section, those of its keys (the ones the
/// pipeline fills in come from earlier stages); a path inside `out` is an earlier stage's
/// output, not written yet. The error names the section and the field.
fn given(ctx: &Ctx, stage: &str, t: Option<&toml::Table>, inputs: &[Input]) -> Result<()> {
    let named = |i: &&Input| t.is_none_or(|t| t.contains_key(i.key()));
    let inputs: Vec<Input> = inputs
        .iter()
        .filter(named)
        .filter(|i| !Path::new(&i.value()).starts_with(&ctx.out))
        .copied()
        .collect();
    let by = |key: &str| match stage {
        "" => format!("field `{key}`"),
        _ => format!("[{stage}] field `{key}`"),
    };
    train::check_inputs(&inputs, by).map_err(|e| ctx.config(e.to_string()))
}

/// A section's settings with the pipeline's defaults, not checked beyond their types.
fn parse_section<S>(
    ctx: &Ctx,
    stage: &str,
    t: Option<&toml::Table>,
    defaults: &[(&str, toml::Value)],
) -> Result<(TrainerConfig, S)>
where
    S: DeserializeOwned + Serialize + Default,
{
    let table = json_table(&section(ctx, stage, t, defaults)?)?;
    Ok(train::settings::from_table(table, &ctx.file, stage)?)
}

fn compare_settings(ctx: &Ctx, t: &toml::Table) -> Result<compare::CompareSettings> {
    let mut t = t.clone();
    t.remove("models");
    let settings: compare::CompareSettings = t
        .try_into()
        .map_err(|e: toml::de::Error| ctx.config(format!("[compare] {}", e.message())))?;
    settings
        .validate()
        .map_err(|e| ctx.config(format!("[compare] {e}")))?;
    Ok(settings)
}

pub fn sft(ctx: &Ctx, t: &toml::Table, model: &str) -> Result<String> {
    let t = section(ctx, "sft", Some(t), &[("model", s(model))])?;
    trainer_stage(ctx, "sft", t, model, |t| {
        let (trainer, cfg) = settings(ctx, "sft", t)?;
        Ok(sft::run(&cfg, &trainer, &ctx.load)?.summary)
    })
}

pub fn reward(ctx: &Ctx, t: &toml::Table, model: &str, prefs: &Path) -> Result<String> {
    let defaults = [("model", s(model)), ("data", p(prefs))];
    let t = section(ctx, "reward", Some(t), &defaults)?;
    trainer_stage(ctx, "reward", t, model, |t| {
        let (trainer, cfg) = settings(ctx, "reward", t)?;
        Ok(reward_model::run(&cfg, &trainer, &ctx.load)?.summary)
    })
}

pub fn dpo(ctx: &Ctx, t: Option<&toml::Table>, model: &str, prefs: &Path) -> Result<String> {
    let t = section(ctx, "dpo", t, &[("model", s(model)), ("data", p(prefs))])?;
    trainer_stage(ctx, "dpo", t, model, |t| {
        let (trainer, cfg) = settings(ctx, "dpo", t)?;
        Ok(dpo::run(&cfg, &trainer, &ctx.load)?.summary)
    })
}

/// `[ppo]`: `rudder ppo` fields; the policy starts from the SFT output and is scored by the
/// reward stage's model unless the section names its own `reward_model` or `reward_cmd`.
pub fn ppo(
    ctx: &Ctx,
    t: Option<&toml::Table>,
    model: &str,
    reward: Option<&str>,
) -> Result<String> {
    let t = section(ctx, "ppo", t, &ppo_defaults(t, model, reward))?;
    trainer_stage(ctx, "ppo", t, model, |t| {
        let (trainer, cfg) = settings(ctx, "ppo", t)?;
        Ok(ppo::run(&cfg, &trainer, &ctx.load)?.summary)
    })
}

fn ppo_defaults(
    t: Option<&toml::Table>,
    model: &str,
    reward: Option<&str>,
) -> Vec<(&'static str, toml::Value)> {
    let mut d = vec![("model", s(model))];
    let own = t.is_some_and(|t| t.contains_key("reward_cmd"));
    if let (Some(r), false) = (reward, own) {
        d.push(("reward_model", s(r)));
    }
    d
}

/// `[compare]`: `rudder compare`'s settings; the models are the pipeline's.
pub fn compare(
    ctx: &Ctx,
    t: Option<&toml::Table>,
    models: &[String],
    reward: Option<&str>,
) -> Result<PathBuf> {
    let mut defaults = vec![];
    if let Some(r) = reward {
        defaults.push(("reward_model", s(r)));
    }
    let mut t = section(ctx, "compare", t, &defaults)?;
    t.insert(
        "models".into(),
        toml::Value::Array(models.iter().map(s).collect()),
    );
    let dir = ctx.dir("compare");
    let index = dir.join("index.html");
    if stage_done(ctx, "compare", &t)? {
        return Ok(index);
    }
    let started = Instant::now();
    let settings = compare_settings(ctx, &t)?;
    let specs = models
        .iter()
        .map(|m| m.parse().map_err(|e: String| ctx.config(e)))
        .collect::<Result<Vec<compare::ModelSpec>>>()?;
    (ctx.say)("pipeline: [compare] running");
    // The pipeline has no cost settings: the defaults (world grid intensity, no price).
    let cost = cost::CostSettings::default();
    let load = lm::LoadOptions {
        trainable: false,
        ..ctx.load.clone()
    };
    let done = compare::report::compare_models(&specs, &settings, &dir, &load, &cost)
        .map_err(|e| ctx.failed("compare", e))?;
    done.lines.iter().for_each(|l| (ctx.say)(l));
    stage_mark(ctx, "compare", &t, &index.display().to_string(), started)?;
    Ok(index)
}
