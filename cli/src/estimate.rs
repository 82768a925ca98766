//! `rudder estimate`: what a run will cost before it starts (`pipeline::estimate`).
use crate::common::DeviceArgs;
use anyhow::Result;
use clap::Args;

/// `rudder estimate`.
#[derive(Args, Debug)]
pub struct EstimateArgs {
    #[command(flatten)]
    pub settings: pipeline::estimate::EstimateSettings,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(a: EstimateArgs) -> Result<()> {
    let r = pipeline::estimate::estimate(&a.settings, &a.device.load_options(true)?)?;
    match a.settings.json {
        true => println!("{}", serde_json::to_string_pretty(&r.json)?),
        false => println!("{}", r.text),
    }
    Ok(())
}
