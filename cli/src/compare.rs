//! `rudder compare`: sample several models on the same prompts (default: the built-in
//! edge-case set), KL of each to the first (base) model on its own samples, optional reward
//! scores, and a self-contained HTML report; `--to-labeling` sends base-vs-other pairs to the
//! labeling app for blind evaluation.
use crate::common::DeviceArgs;
use anyhow::{Context, Result};
use clap::Args;
use compare::{CompareSettings, ModelSpec, Report};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// NAME=MODEL, repeatable; the first is the base every other model is compared with.
    #[arg(long = "model", required = true)]
    pub models: Vec<ModelSpec>,
    /// Prompt rows {"prompt", "id"?, "group"?, "variant"?, "category"?} [the built-in edge-case set].
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Reward model scoring every completion (a `rudder reward train` output).
    #[arg(long)]
    pub reward_model: Option<String>,
    /// Completions per prompt and model; sample j uses seed + j for every model [1].
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per generation and scoring batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Report folder: results.jsonl, summary.json, index.html.
    #[arg(long)]
    pub out: PathBuf,
    /// Also import base-vs-model answer pairs into the labeling app for blind comparison.
    #[arg(long, requires_all = ["db", "project"])]
    pub to_labeling: bool,
    /// Labeling database (path or sqlite:// URL).
    #[arg(long, env = "RUDDER_LABEL_DB")]
    pub db: Option<String>,
    /// Labeling project (created when missing).
    #[arg(long)]
    pub project: Option<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub cost: crate::trainer_flags::CostFlags,
}

impl CompareArgs {
    fn settings(&self) -> CompareSettings {
        CompareSettings {
            prompts: self.prompts.clone(),
            reward_model: self.reward_model.clone(),
            samples: self.samples,
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            batch_size: self.batch_size,
        }
    }
}

pub fn run(a: CompareArgs) -> Result<()> {
    let cost = a.cost.settings();
    let report = compare_models(&a.models, &a.settings(), &a.out, &a.device, &cost)?;
    if a.to_labeling {
        let (db, project) = (
            a.db.as_deref().unwrap_or_default(),
            a.project.as_deref().unwrap_or_default(),
        );
        let n = push(db, project, &report.samples)?;
        println!("labeling: imported {n} blind base-vs-model pairs into project `{project}` ({db}); serve with `rudder label serve --db {db}`, then `rudder label winrate --project {project} --db {db}`");
    }
    Ok(())
}

/// Samples, scores and writes the report (with each model's sampling cost under `cost`);
/// shared with `rudder pipeline`.
pub fn compare_models(
    models: &[ModelSpec],
    settings: &CompareSettings,
    out: &Path,
    device: &DeviceArgs,
    cost: &train::cost::CostSettings,
) -> Result<Report> {
    settings.validate().context("compare")?;
    let prompts = compare::prompts::load(settings.prompts.as_deref())?;
    let source = settings
        .prompts
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| compare::prompts::DEFAULT_SOURCE.into());
    let opts = device.load_options(false)?;
    let sampled =
        compare::run::run_models(models, &prompts, settings, &opts, cost).context("compare")?;
    let report =
        Report::build(models, sampled.samples, settings, &source).with_costs(sampled.costs);
    compare::write_report(out, &report)
        .with_context(|| format!("writing the report in {}", out.display()))?;
    for m in &report.models {
        let f = |e: &Option<compare::stats::Estimate>| {
            e.map(|e| format!("{:.3} [{:.3}, {:.3}]", e.value, e.lo, e.hi))
                .unwrap_or("-".into())
        };
        println!(
            "{:>12}: reward {}, KL to base {}, tokens {}",
            m.name,
            f(&m.reward),
            f(&m.kl),
            f(&m.completion_tokens)
        );
        if let Some(c) = &m.cost {
            let line = crate::estimate::cost_line(&c.cost);
            println!(
                "{:>12}  sampling {} new tokens: {line}",
                "", c.generated_tokens
            );
        }
    }
    println!(
        "compare: {} prompts x {} models; wrote {}",
        prompts.len(),
        models.len(),
        out.join("index.html").display()
    );
    Ok(report)
}

fn push(db: &str, project: &str, samples: &[compare::Sample]) -> Result<usize> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let pool = labeling_ui::db::open(db).await?;
        compare::blind::ensure_project(&pool, project).await?;
        Ok(compare::blind::push_to_labeling(&pool, project, samples).await?)
    })
}

/// `rudder label winrate`: prints one line per group and model plus the overall rate, and the
/// rows as JSON with `--json`.
pub fn winrate(db: &str, project: &str, json: bool) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let rows = rt.block_on(async {
        let pool = labeling_ui::db::open(db).await?;
        anyhow::Ok(compare::blind::win_rates(&pool, project).await?)
    })?;
    anyhow::ensure!(
        !rows.is_empty(),
        "project `{project}`: no labels on `rudder compare --to-labeling` pairs yet"
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let label = |r: &compare::blind::WinRate| {
        let g = r.group.as_deref().unwrap_or("all groups");
        format!("{} vs {} / {g}", r.model, r.base)
    };
    let w = rows
        .iter()
        .map(|r| label(r).len())
        .max()
        .unwrap_or(0)
        .max(20);
    println!(
        "{:<w$} {:>5} {:>5} {:>5} {:>5}  {:<24} {:<24}",
        "model vs base / group",
        "n",
        "win",
        "tie",
        "loss",
        "win rate [Wilson 95%]",
        "tie rate [Wilson 95%]"
    );
    for r in &rows {
        let e = |e: &Option<compare::stats::Estimate>| {
            e.map(|e| format!("{:.3} [{:.3}, {:.3}]", e.value, e.lo, e.hi))
                .unwrap_or("-".into())
        };
        let t = &r.tally;
        println!(
            "{:<w$} {:>5} {:>5} {:>5} {:>5}  {:<24} {:<24}",
            label(r),
            t.n(),
            t.wins,
            t.ties,
            t.losses,
            e(&r.win_rate),
            e(&r.tie_rate)
        );
    }
    Ok(())
}
