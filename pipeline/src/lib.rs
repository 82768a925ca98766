//! The whole alignment run as a library (`rudder pipeline` is its argument parsing): SFT →
//! candidates for labeling → labels (or a preference file) → reward model → policy (DPO, or
//! PPO) → compare. Each stage writes into `<out>/<stage>/` (`policy = "dpo" | "ppo"` picks the
//! policy stage) and its marker file (`.rudder-stage.json`, written last) makes a later run
//! skip it. A stage's section holds its settings under the names of its config struct (the
//! subcommand's flags with `_`); the pipeline fills in `model`, `data` and `out` from the
//! earlier stages and calls the stage with its config directly.
mod candidates;
mod error;
pub mod estimate;
mod labels;
mod stages;

pub use candidates::{generate_candidates, CandidateSettings};
pub use error::{Error, Result};

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The top level of `pipeline.toml`. Stage sections are kept as tables: each is checked by its
/// own config struct, so the names and the errors are the subcommand's.
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

/// How the pipeline runs: where models go, and where its progress lines go.
pub struct Options<'a> {
    /// Device and precision for every model (`trainable` is set per use).
    pub load: lm::LoadOptions,
    /// Gets each progress line (`pipeline: [sft] running`, a stage's summary, ...).
    pub say: &'a dyn Fn(&str),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// Every stage is complete: the comparison report's `index.html`.
    Report(PathBuf),
    /// Stopped for labels; the progress lines said where to label.
    WaitingForLabels,
}

/// Reads and checks `pipeline.toml`.
pub fn read_config(file: &Path) -> Result<PipelineConfig> {
    let text = std::fs::read_to_string(file).map_err(Error::io(file))?;
    toml::from_str(&text).map_err(|e| Error::Config {
        file: file.display().to_string(),
        reason: e.message().to_string(),
    })
}

/// Runs every stage of `cfg` not finished yet (`file` names the config in messages).
pub fn run(cfg: &PipelineConfig, file: &str, opts: &Options) -> Result<Finish> {
    let ctx = stages::Ctx {
        file: file.to_string(),
        out: cfg.out.clone(),
        load: opts.load.clone(),
        keep_checkpoints: cfg.keep_checkpoints,
        say: opts.say,
    };
    stages::check(&ctx, cfg)?;
    std::fs::create_dir_all(&ctx.out).map_err(Error::io(&ctx.out))?;
    let start = cfg.model.clone();
    let sft_model = match &cfg.sft {
        Some(t) => Some(stages::sft(&ctx, t, &start)?),
        None => None,
    };
    let policy_in = sft_model.clone().unwrap_or_else(|| start.clone());
    // PPO scored by a command needs no preference pairs; everything else does.
    let prefs = if cfg.reward.is_some() || cfg.policy == "dpo" {
        match labels::preferences(&ctx, cfg, &policy_in)? {
            Some(p) => Some(p),
            None => return Ok(Finish::WaitingForLabels),
        }
    } else {
        None
    };
    let reward = match (&cfg.reward, &prefs) {
        (Some(t), Some(p)) => Some(stages::reward(&ctx, t, &policy_in, p)?),
        _ => None,
    };
    let aligned = policy(&ctx, cfg, &policy_in, prefs.as_deref(), reward.as_deref())?;
    let mut models = vec![format!("base={start}")];
    if let Some(m) = &sft_model {
        models.push(format!("sft={m}"));
    }
    models.push(format!("aligned={aligned}"));
    let report = stages::compare(&ctx, cfg.compare.as_ref(), &models, reward.as_deref())?;
    let dirs = ["sft", "reward", "dpo", "ppo", "compare"].map(|s| (s, ctx.out.join(s)));
    let stages = [
        "sft",
        "candidates",
        "labels",
        "reward",
        "dpo",
        "ppo",
        "compare",
    ];
    cost::pipeline_cost_lines(&dirs, stages::wall_s(&ctx, &stages))
        .iter()
        .for_each(|l| (ctx.say)(l));
    Ok(Finish::Report(report))
}

/// `path` as an absolute `file://` URL a browser opens (bytes outside unreserved characters and
/// `/` percent-encoded).
pub fn file_url(path: &Path) -> Result<String> {
    let abs = std::fs::canonicalize(path).map_err(Error::io(path))?;
    let mut url = String::from("file://");
    for b in abs.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                url.push(b as char)
            }
            _ => url.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(url)
}

/// The policy stage: one arm per algorithm, each running its stage with its section.
fn policy(
    ctx: &stages::Ctx,
    cfg: &PipelineConfig,
    model: &str,
    prefs: Option<&Path>,
    reward: Option<&str>,
) -> Result<String> {
    match (cfg.policy.as_str(), prefs) {
        ("dpo", Some(prefs)) => stages::dpo(ctx, cfg.dpo.as_ref(), model, prefs),
        ("ppo", _) => stages::ppo(ctx, cfg.ppo.as_ref(), model, reward),
        (other, _) => Err(ctx.config(format!(
            "field `policy`: `{other}` is not one of dpo, ppo (dpo needs preferences)"
        ))),
    }
}
