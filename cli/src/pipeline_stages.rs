//! The stages of `rudder pipeline`. Each one: merge the pipeline's defaults into its section,
//! skip when its marker holds the same section, else run the subcommand and write the marker.
use crate::common::DeviceArgs;
use crate::pipeline::{PipelineConfig, Preferences};
use crate::trainer_flags::TrainFlags;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub struct Ctx {
    /// The pipeline config's path, for messages.
    pub file: String,
    pub out: PathBuf,
    pub device: DeviceArgs,
    /// Keep the trainers' `checkpoint-*` folders after a stage completes.
    pub keep_checkpoints: bool,
}

const MARKER: &str = ".rudder-stage.json";

impl Ctx {
    fn dir(&self, stage: &str) -> PathBuf {
        self.out.join(stage)
    }
}

/// Fills `key` unless the section sets it; `out` belongs to the pipeline.
fn section(
    ctx: &Ctx,
    stage: &str,
    t: Option<&toml::Table>,
    defaults: &[(&str, toml::Value)],
) -> Result<toml::Table> {
    let mut t = t.cloned().unwrap_or_default();
    if t.contains_key("out") {
        bail!(
            "{}: [{stage}] field `out`: set by the pipeline ({})",
            ctx.file,
            ctx.dir(stage).display()
        );
    }
    for (k, v) in defaults {
        t.entry(k.to_string()).or_insert_with(|| v.clone());
    }
    Ok(t)
}

fn s(v: impl AsRef<str>) -> toml::Value {
    toml::Value::String(v.as_ref().into())
}

fn p(v: &Path) -> toml::Value {
    s(v.display().to_string())
}

/// Whether the stage finished before with this exact section; a different section is an
/// error (its outputs would no longer match the config).
pub fn stage_done(ctx: &Ctx, stage: &str, t: &toml::Table) -> Result<bool> {
    let marker = ctx.dir(stage).join(MARKER);
    let Ok(text) = std::fs::read_to_string(&marker) else {
        return Ok(false);
    };
    let old: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("reading {}", marker.display()))?;
    if old["config"] != serde_json::to_value(t)? {
        bail!(
            "{}: stage [{stage}] finished earlier with a different config; delete {} to run it again",
            ctx.file,
            ctx.dir(stage).display()
        );
    }
    println!(
        "pipeline: [{stage}] already complete ({}); skipping",
        ctx.dir(stage).display()
    );
    Ok(true)
}

pub fn stage_mark(ctx: &Ctx, stage: &str, t: &toml::Table, output: &str) -> Result<()> {
    let marker = ctx.dir(stage).join(MARKER);
    let v = serde_json::json!({ "stage": stage, "config": t, "output": output });
    std::fs::write(&marker, serde_json::to_string_pretty(&v)?)
        .with_context(|| format!("writing {}", marker.display()))
}

fn output_of(ctx: &Ctx, stage: &str) -> Result<String> {
    let marker = ctx.dir(stage).join(MARKER);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&marker)?)?;
    v["output"]
        .as_str()
        .map(String::from)
        .context("marker without output")
}

/// Writes the section as the subcommand's `--config` file and returns the trainer flags.
fn config_file(ctx: &Ctx, stage: &str, t: &toml::Table) -> Result<TrainFlags> {
    let dir = ctx.dir(stage);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("pipeline-{stage}.toml"));
    std::fs::write(&path, toml::to_string_pretty(t)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(TrainFlags {
        config: Some(path),
        out: Some(dir),
        ..Default::default()
    })
}

/// A finished stage is never resumed (the marker skips it), and a checkpoint holds the weights
/// plus two AdamW moments: 3x the model on disk per stage.
fn drop_checkpoints(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("checkpoint-") && e.path().is_dir() {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
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
    crate::sft::merge(crate::sft::MergeArgs {
        model: base.into(),
        adapter: dir.clone(),
        out: merged.clone(),
        device: ctx.device.clone(),
    })?;
    Ok(merged.display().to_string())
}

fn trainer_stage(
    ctx: &Ctx,
    stage: &str,
    t: toml::Table,
    base: &str,
    run: impl FnOnce(TrainFlags) -> Result<()>,
) -> Result<String> {
    if stage_done(ctx, stage, &t)? {
        return output_of(ctx, stage);
    }
    println!("pipeline: [{stage}] running");
    let flags = config_file(ctx, stage, &t)?;
    run(flags).with_context(|| format!("{}: stage [{stage}]", ctx.file))?;
    let out = full_model(ctx, stage, base)?;
    if !ctx.keep_checkpoints {
        drop_checkpoints(&ctx.dir(stage))?;
    }
    stage_mark(ctx, stage, &t, &out)?;
    Ok(out)
}

/// Parses every stage section before any stage runs, so a typo in `[compare]` does not wait
/// for training to finish. Model and data paths are placeholders here (they may not exist yet).
pub fn check(ctx: &Ctx, cfg: &PipelineConfig) -> Result<()> {
    use crate::trainer_flags::resolve;
    let dir = ctx.out.join(".check");
    // Later stages start from the SFT output, which has the starting model's architecture.
    let placeholders = [("model", s(&cfg.model)), ("data", s("prefs.jsonl"))];
    let write = |stage: &str, t: &toml::Table| -> Result<TrainFlags> {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{stage}.toml"));
        std::fs::write(&path, toml::to_string_pretty(t)?)?;
        Ok(TrainFlags {
            config: Some(path),
            out: Some(ctx.dir(stage)),
            ..Default::default()
        })
    };
    // The scratch file's path is noise in the message: the pipeline file is named instead.
    let scrub = |e: anyhow::Error, stage: &str| {
        let path = format!("{}: ", dir.join(format!("{stage}.toml")).display());
        anyhow::anyhow!("{}: {}", ctx.file, format!("{e:#}").replace(&path, ""))
    };
    if let Some(t) = &cfg.sft {
        let f = write("sft", &section(ctx, "sft", Some(t), &placeholders[..1])?)?;
        let (_, c): (_, ::sft::SftConfig) =
            resolve(&f, &crate::sft::SftFlags::default(), "sft").map_err(|e| scrub(e, "sft"))?;
        c.validate()
            .map_err(|e| anyhow::anyhow!("{}: [sft] {e}", ctx.file))?;
    }
    if let Some(t) = &cfg.reward {
        let f = write("reward", &section(ctx, "reward", Some(t), &placeholders)?)?;
        let (_, c): (_, reward_model::RewardConfig) =
            resolve(&f, &crate::reward::RewardFlags::default(), "reward")
                .map_err(|e| scrub(e, "reward"))?;
        c.validate()
            .map_err(|e| anyhow::anyhow!("{}: [reward] {e}", ctx.file))?;
    }
    match cfg.policy.as_str() {
        "dpo" | "ppo" => {}
        other => bail!(
            "{}: field `policy`: `{other}` is not one of dpo, ppo",
            ctx.file
        ),
    }
    if cfg.policy == "dpo" {
        let f = write(
            "dpo",
            &section(ctx, "dpo", cfg.dpo.as_ref(), &placeholders)?,
        )?;
        let (_, c): (_, ::dpo::DpoConfig) =
            resolve(&f, &crate::dpo::DpoFlags::default(), "dpo").map_err(|e| scrub(e, "dpo"))?;
        c.validate()
            .map_err(|e| anyhow::anyhow!("{}: [dpo] {e}", ctx.file))?;
    }
    if cfg.policy == "ppo" {
        let reward = cfg.reward.as_ref().map(|_| "reward");
        let t = section(
            ctx,
            "ppo",
            cfg.ppo.as_ref(),
            &ppo_defaults(cfg.ppo.as_ref(), &cfg.model, reward),
        )?;
        let f = write("ppo", &t)?;
        let (tr, c): (_, ::ppo::PpoConfig) =
            resolve(&f, &crate::ppo::PpoFlags::default(), "ppo").map_err(|e| scrub(e, "ppo"))?;
        c.validate(&tr)
            .map_err(|e| anyhow::anyhow!("{}: [ppo] {e}", ctx.file))?;
    }
    compare_settings(ctx, &section(ctx, "compare", cfg.compare.as_ref(), &[])?)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn compare_settings(ctx: &Ctx, t: &toml::Table) -> Result<compare::CompareSettings> {
    let mut t = t.clone();
    t.remove("models");
    let settings: compare::CompareSettings = t
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: [compare] {}", ctx.file, e.message()))?;
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: [compare] {e}", ctx.file))?;
    Ok(settings)
}

pub fn sft(ctx: &Ctx, t: &toml::Table, model: &str) -> Result<String> {
    let t = section(ctx, "sft", Some(t), &[("model", s(model))])?;
    let device = ctx.device.clone();
    trainer_stage(ctx, "sft", t, model, |train| {
        crate::sft::run(crate::sft::SftArgs {
            stage: Default::default(),
            train,
            device,
        })
    })
}

pub fn reward(ctx: &Ctx, t: &toml::Table, model: &str, prefs: &Path) -> Result<String> {
    let t = section(
        ctx,
        "reward",
        Some(t),
        &[("model", s(model)), ("data", p(prefs))],
    )?;
    let device = ctx.device.clone();
    trainer_stage(ctx, "reward", t, model, |train| {
        crate::reward::run(crate::reward::RewardCommand::Train(Box::new(
            crate::reward::TrainArgs {
                stage: Default::default(),
                no_margin: false,
                train,
                device,
            },
        )))
    })
}

pub fn dpo(ctx: &Ctx, t: Option<&toml::Table>, model: &str, prefs: &Path) -> Result<String> {
    let t = section(ctx, "dpo", t, &[("model", s(model)), ("data", p(prefs))])?;
    let device = ctx.device.clone();
    trainer_stage(ctx, "dpo", t, model, |train| {
        crate::dpo::run(crate::dpo::DpoArgs {
            stage: Default::default(),
            train,
            device,
        })
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
    let device = ctx.device.clone();
    trainer_stage(ctx, "ppo", t, model, |train| {
        crate::ppo::run(crate::ppo::PpoArgs {
            stage: Default::default(),
            train,
            device,
        })
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
    let settings = compare_settings(ctx, &t)?;
    let specs = models
        .iter()
        .map(|m| m.parse().map_err(anyhow::Error::msg))
        .collect::<Result<Vec<compare::ModelSpec>>>()?;
    println!("pipeline: [compare] running");
    // The pipeline has no cost flags: the defaults (world grid intensity, no price).
    let cost = train::cost::CostSettings::default();
    crate::compare::compare_models(&specs, &settings, &dir, &ctx.device, &cost)
        .with_context(|| format!("{}: stage [compare]", ctx.file))?;
    stage_mark(ctx, "compare", &t, &index.display().to_string())?;
    Ok(index)
}

/// The preference pairs: `[preferences] file`, or candidates sampled into the labeling app
/// and, once labeled, exported. None: stopped, waiting for labels (the message says where).
pub fn preferences(ctx: &Ctx, cfg: &PipelineConfig, model: &str) -> Result<Option<PathBuf>> {
    let prefs = cfg.preferences.as_ref().map(|p| p as &Preferences);
    if let Some(f) = prefs.and_then(|p| p.file.clone()) {
        if cfg.candidates.is_some() {
            bail!("{}: [preferences] field `file`: give either a preference file or a [candidates] section, not both", ctx.file);
        }
        if !f.exists() {
            bail!(
                "{}: [preferences] field `file`: {} does not exist",
                ctx.file,
                f.display()
            );
        }
        return Ok(Some(f));
    }
    let Some(cand) = &cfg.candidates else {
        bail!("{}: preferences needed: set [preferences] file = \"prefs.jsonl\", or add a [candidates] section to label candidates in the browser", ctx.file);
    };
    let db = ctx.out.join("labels.sqlite");
    let t = section(
        ctx,
        "candidates",
        Some(cand),
        &[
            ("model", s(model)),
            ("db", p(&db)),
            ("project", s("pipeline")),
        ],
    )?;
    crate::pipeline_label::candidates(ctx, &t)?;
    crate::pipeline_label::labels(ctx, &t, prefs.unwrap_or(&Preferences::default()))
}
