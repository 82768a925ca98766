//! `rudder compare`: sample several models on the same prompts (default: the built-in
//! edge-case set), KL of each to the first (base) model on its own samples, optional reward
//! scores, and a self-contained HTML report; `--to-labeling` sends base-vs-other pairs to the
//! labeling app for blind evaluation.
use crate::common::DeviceArgs;
use anyhow::{Context, Result};
use clap::Args;
use compare::{CompareSettings, ModelSpec};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// NAME=MODEL, repeatable; the first is the base every other model is compared with.
    #[arg(long = "model", required = true)]
    pub models: Vec<ModelSpec>,
    #[command(flatten)]
    pub settings: CompareSettings,
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
    pub cost: cost::CostSettings,
}

pub fn run(a: CompareArgs) -> Result<()> {
    let opts = a.device.load_options(false)?;
    let done = compare::report::compare_models(&a.models, &a.settings, &a.out, &opts, &a.cost)
        .context("compare")?;
    done.lines.iter().for_each(|l| println!("{l}"));
    if a.to_labeling {
        let (db, project) = (
            a.db.as_deref().unwrap_or_default(),
            a.project.as_deref().unwrap_or_default(),
        );
        let n = push(db, project, &done.report.samples)?;
        println!("labeling: imported {n} blind base-vs-model pairs into project `{project}` ({db}); serve with `rudder label serve --db {db}`, then `rudder label winrate --project {project} --db {db}`");
    }
    Ok(())
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
    println!("{}", compare::report::win_rate_table(&rows));
    Ok(())
}
