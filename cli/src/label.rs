//! `rudder label ...`: the labeling app's own subcommands plus `generate`, which samples
//! candidate responses with the model core and imports them as comparisons.
use crate::common::DeviceArgs;
use anyhow::Result;
use clap::{Args, Subcommand};
use labeling_ui::cli::{LabelArgs, LabelCommand};

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

/// `rudder label generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    settings: pipeline::CandidateSettings,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(cli: LabelCli) -> Result<()> {
    match cli.command {
        LabelCmd::Winrate(a) => crate::compare::winrate(&a.db, &a.project, a.json),
        LabelCmd::App(command) => {
            let rt = tokio::runtime::Runtime::new()?;
            Ok(rt.block_on(labeling_ui::cli::run(LabelArgs { command }))?)
        }
        LabelCmd::Generate(a) => {
            let opts = a.device.load_options(false)?;
            let report = pipeline::generate_candidates(&a.settings, &opts)?;
            eprintln!(
                "imported {} items ({} comparisons, {} to rank) into `{}`",
                report.items,
                report.comparisons,
                report.rankings,
                a.settings.project.as_deref().unwrap_or_default()
            );
            Ok(())
        }
    }
}
