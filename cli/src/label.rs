//! `rudder label ...`: the labeling app's own subcommands plus `generate`, which samples
//! candidate responses with the model core and imports them as comparisons.
use crate::common::{load_model, DeviceArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use labeling_ui::cli::{LabelArgs, LabelCommand};
use lm::generate::{generate, SamplingConfig};
use lm::{jsonl, TextOrMessages};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct LabelCli {
    #[command(subcommand)]
    command: LabelCmd,
}

#[derive(Subcommand, Debug)]
enum LabelCmd {
    /// Sample N responses per prompt from a model and import them into a project.
    Generate(GenerateArgs),
    /// Win, tie and loss rates (Wilson 95% intervals) of each model against the base, per
    /// group and overall, from labels on `rudder compare --to-labeling` pairs.
    Winrate(WinrateArgs),
    #[command(flatten)]
    App(LabelCommand),
}

#[derive(Args, Debug)]
pub struct WinrateArgs {
    #[arg(long, env = "RUDDER_LABEL_DB")]
    db: String,
    #[arg(long)]
    project: String,
    /// Print the rows as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Labeling database: a path or a sqlite:// URL.
    #[arg(long, env = "RUDDER_LABEL_DB")]
    db: String,
    /// Project to import into (must exist: `rudder label create-project`).
    #[arg(long)]
    project: String,
    /// Model: HF folder, hub id or .gguf.
    #[arg(long)]
    model: String,
    /// JSONL rows {"prompt": str | messages}.
    #[arg(long)]
    prompts: PathBuf,
    /// Responses per prompt (2 or more; a ranking project needs at least its K).
    #[arg(long, default_value_t = 2)]
    n: usize,
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Sampling temperature (responses must differ, so > 0).
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(cli: LabelCli) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        LabelCmd::Winrate(a) => crate::compare::winrate(&a.db, &a.project, a.json),
        LabelCmd::App(command) => Ok(rt.block_on(labeling_ui::cli::run(LabelArgs { command }))?),
        LabelCmd::Generate(a) => {
            // Fail before sampling (minutes) rather than at the import.
            let info = rt.block_on(async {
                let pool = labeling_ui::db::open(&a.db).await?;
                labeling_ui::db::project_info(&pool, &a.project).await
            })?;
            if let Some(k) = info.k.filter(|&k| (a.n as i64) < k) {
                bail!(
                    "project `{}` ranks {k} responses per item: --n must be at least {k}",
                    a.project
                );
            }
            let items = sample(&a)?;
            let report = rt.block_on(async {
                let pool = labeling_ui::db::open(&a.db).await?;
                labeling_ui::import_items(&pool, &a.project, items).await
            })?;
            eprintln!(
                "imported {} items ({} comparisons, {} to rank) into `{}`",
                report.items, report.comparisons, report.rankings, a.project
            );
            Ok(())
        }
    }
}

/// Generates `n` responses for every prompt, one seeded pass over the prompts per response.
fn sample(a: &GenerateArgs) -> Result<Vec<labeling_ui::ImportItem>> {
    if a.n < 2 || a.temperature <= 0.0 {
        bail!("--n must be at least 2 and --temperature above 0 (the responses must differ)");
    }
    let rows = jsonl::read_rows(&a.prompts)?;
    let prompts = rows
        .iter()
        .map(|r| {
            let v = r.value.get("prompt").cloned().with_context(|| {
                format!(
                    "{}:{}: field `prompt` is missing",
                    a.prompts.display(),
                    r.line
                )
            })?;
            serde_json::from_value::<TextOrMessages>(v)
                .with_context(|| format!("{}:{}: field `prompt`", a.prompts.display(), r.line))
        })
        .collect::<Result<Vec<_>>>()?;
    let p = load_model(&a.model, &a.device.load_options(false)?)?;
    let ids = prompts
        .iter()
        .map(|x| p.tokenizer.encode_prompt(x))
        .collect::<lm::Result<Vec<_>>>()?;
    let mut responses: Vec<Vec<String>> = vec![vec![]; prompts.len()];
    for j in 0..a.n {
        let cfg = SamplingConfig {
            max_new_tokens: a.max_new_tokens,
            temperature: a.temperature,
            top_p: a.top_p,
            seed: a.seed.wrapping_add(j as u64),
            ..Default::default()
        };
        for (chunk_i, chunk) in ids.chunks(a.batch_size.max(1)).enumerate() {
            for (k, g) in generate(&p.model, &p.tokenizer, chunk, &cfg)?
                .into_iter()
                .enumerate()
            {
                responses[chunk_i * a.batch_size.max(1) + k].push(g.text);
            }
        }
    }
    prompts
        .into_iter()
        .zip(responses)
        .map(|(prompt, responses)| {
            let prompt = serde_json::from_value(serde_json::to_value(prompt)?)?;
            Ok(labeling_ui::ImportItem { prompt, responses })
        })
        .collect()
}
