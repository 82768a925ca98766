//! `rudder pipeline --config pipeline.toml`: the `pipeline` crate's whole run (SFT → labeling
//! candidates → labels or a preference file → reward model → DPO or PPO → compare), its
//! progress printed; see examples/pipeline.toml and cli/README.md.
use crate::common::DeviceArgs;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PipelineArgs {
    /// Pipeline TOML (see examples/pipeline.toml).
    #[arg(long)]
    pub config: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(a: PipelineArgs) -> Result<()> {
    let cfg = pipeline::read_config(&a.config)?;
    let say = |line: &str| println!("{line}");
    let opts = pipeline::Options {
        load: a.device.load_options(true)?,
        say: &say,
    };
    let file = a.config.display().to_string();
    if let pipeline::Finish::Report(index) = pipeline::run(&cfg, &file, &opts)? {
        println!("pipeline: done");
        println!("report: {}", pipeline::file_url(&index)?);
    }
    Ok(())
}
