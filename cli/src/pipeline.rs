//! `rudder pipeline --config pipeline.toml`: SFT → candidates for labeling → labels (or a
//! preference file) → reward model → policy (DPO, or PPO) → compare. Each stage writes into
//! `<out>/<stage>/` (`policy = "dpo" | "ppo"` picks the policy stage), and its marker file
//! (`.rudder-stage.json`, written last) makes a later run skip it. Each stage's section uses the field names of its subcommand's `--config` / flags;
//! the pipeline fills in `model`, `data` and `out` from the earlier stages.
use crate::common::DeviceArgs;
use crate::pipeline_stages::{self as st, Ctx};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PipelineArgs {
    /// Pipeline TOML (see examples/pipeline.toml).
    #[arg(long)]
    pub config: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The top level of `pipeline.toml`. Stage sections are kept as tables: each is checked by its
/// own subcommand's parser, so the names and the errors are the subcommand's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Root folder; stage `s` writes `<out>/<s>/`.
    pub out: PathBuf,
    /// Starting model (HF folder, hub id or .gguf); also the base of the comparison.
    pub model: String,
    /// Policy optimisation: "dpo" or "ppo".
    #[serde(default = "default_policy")]
    pub policy: String,
    /// Keep each trainer's `checkpoint-*` folders once its stage is complete [false: removed,
    /// they hold 3x the model each].
    #[serde(default)]
    pub keep_checkpoints: bool,
    pub sft: Option<toml::Table>,
    pub candidates: Option<toml::Table>,
    pub preferences: Option<Preferences>,
    pub reward: Option<toml::Table>,
    pub dpo: Option<toml::Table>,
    pub ppo: Option<toml::Table>,
    pub compare: Option<toml::Table>,
}

fn default_policy() -> String {
    "dpo".into()
}

/// Where preferences come from: a file, or the labeling app (after `[candidates]`).
#[derive(Debug, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Preference pairs (any format `rudder dpo` / `rudder reward train` read); skips labeling.
    pub file: Option<PathBuf>,
    /// URL of `rudder label serve`, printed when labels are needed [http://127.0.0.1:8080].
    pub url: Option<String>,
    /// Comparisons that need a label before the pipeline goes on [all of them].
    pub min_labeled: Option<i64>,
    /// Ties in the export: "drop" or "margin" [drop].
    pub ties: Option<String>,
}

pub fn run(a: PipelineArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("reading {}", a.config.display()))?;
    let cfg: PipelineConfig = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", a.config.display(), e.message()))?;
    let ctx = Ctx {
        file: a.config.display().to_string(),
        out: cfg.out.clone(),
        device: a.device,
        keep_checkpoints: cfg.keep_checkpoints,
    };
    std::fs::create_dir_all(&ctx.out).with_context(|| format!("creating {}", ctx.out.display()))?;
    st::check(&ctx, &cfg)?;
    let start = cfg.model.clone();
    let sft_model = match &cfg.sft {
        Some(t) => Some(st::sft(&ctx, t, &start)?),
        None => None,
    };
    let policy_in = sft_model.clone().unwrap_or_else(|| start.clone());
    // PPO scored by a command needs no preference pairs; everything else does.
    let prefs = if cfg.reward.is_some() || cfg.policy == "dpo" {
        match st::preferences(&ctx, &cfg, &policy_in)? {
            Some(p) => Some(p),
            None => return Ok(()), // stopped for labels; the message is printed
        }
    } else {
        None
    };
    let reward = match (&cfg.reward, &prefs) {
        (Some(t), Some(p)) => Some(st::reward(&ctx, t, &policy_in, p)?),
        _ => None,
    };
    let aligned = policy(&ctx, &cfg, &policy_in, prefs.as_deref(), reward.as_deref())?;
    let mut models = vec![format!("base={start}")];
    if let Some(m) = &sft_model {
        models.push(format!("sft={m}"));
    }
    models.push(format!("aligned={aligned}"));
    let report = st::compare(&ctx, cfg.compare.as_ref(), &models, reward.as_deref())?;
    let stages = ["sft", "reward", "dpo", "ppo", "compare"].map(|s| (s, ctx.out.join(s)));
    crate::estimate::pipeline_cost(&stages);
    println!("pipeline: done; report {}", report.display());
    Ok(())
}

/// The policy stage: one arm per algorithm, each running its subcommand with its section.
fn policy(
    ctx: &Ctx,
    cfg: &PipelineConfig,
    model: &str,
    prefs: Option<&std::path::Path>,
    reward: Option<&str>,
) -> Result<String> {
    match cfg.policy.as_str() {
        "dpo" => st::dpo(
            ctx,
            cfg.dpo.as_ref(),
            model,
            prefs.context("dpo needs preferences")?,
        ),
        "ppo" => st::ppo(ctx, cfg.ppo.as_ref(), model, reward),
        other => bail!(
            "{}: field `policy`: `{other}` is not one of dpo, ppo",
            ctx.file
        ),
    }
}
