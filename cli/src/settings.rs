//! How a trainer's settings resolve: each setting is a field of its config struct (the
//! `train::TrainerConfig` loop settings, the stage's own), defined once with its flag and its
//! default. `--config FILE.toml` holds the same names with `_`; a flag given on the command
//! line overrides the file in both directions (`--precompute-ref false` turns off
//! `precompute_ref = true`), the file overrides the defaults.
use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::PathBuf;
use train::TrainerConfig;

/// `--config` and the loop's settings, shared by `rudder sft|dpo|reward train|ppo`.
#[derive(Args, Debug, Clone)]
pub struct LoopArgs {
    /// TOML file with any trainer or stage setting (the flags' names with `_`); flags given on
    /// the command line override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub trainer: TrainerConfig,
}

/// The loop's and the stage's settings: defaults, then `--config`, then the flags `m` says were
/// given on the command line.
pub fn resolve<S: DeserializeOwned + Serialize + Default>(
    args: &LoopArgs,
    flags: &S,
    m: &ArgMatches,
    stage: &str,
) -> Result<(TrainerConfig, S)> {
    let (mut table, file) = match &args.config {
        Some(p) => (train::settings::read_toml(p)?, p.display().to_string()),
        None => (Map::new(), "command line".to_string()),
    };
    for v in [
        serde_json::to_value(&args.trainer)?,
        serde_json::to_value(flags)?,
    ] {
        if let Value::Object(o) = v {
            table.extend(o.into_iter().filter(|(k, _)| given(m, k)));
        }
    }
    Ok(train::settings::resolve_table(table, &file, stage)?)
}

/// Whether the flag of setting `id` was given on the command line (not defaulted).
fn given(m: &ArgMatches, id: &str) -> bool {
    m.try_contains_id(id).unwrap_or(false) && m.value_source(id) == Some(ValueSource::CommandLine)
}

/// The innermost subcommand's matches (`rudder reward train` → `train`'s).
pub fn leaf(mut m: &ArgMatches) -> &ArgMatches {
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    m
}
