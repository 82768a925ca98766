//! `rudder`: the whole alignment pipeline in one binary.
mod bench;
mod common;
mod compare;
mod dpo;
mod estimate;
mod infer;
mod kto;
mod label;
mod pipeline;
mod ppo;
mod reward;
mod settings;
mod sft;
mod topview;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rudder",
    version,
    about = "RLHF alignment trainer: SFT, labeling, reward model, PPO/DPO, compare"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate completions for prompts (JSONL rows {"prompt": str | messages}).
    Generate(infer::GenerateArgs),
    /// Log-probabilities of completions given prompts (rows {"prompt","completion"}).
    Logprobs(infer::LogprobsArgs),
    /// Write a model (HF folder, hub id or GGUF) as a transformers-loadable folder.
    Export(infer::ExportArgs),
    /// Measure training or generation speed.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The labeling web app and its database.
    Label(label::LabelCli),
    /// Supervised fine-tuning (full or LoRA) on text, prompt/completion, messages or Alpaca rows.
    Sft(sft::SftArgs),
    /// Merge a LoRA adapter (PEFT format) into its base model and write a full model folder.
    Merge(sft::MergeArgs),
    /// Reward model: `train` on preference pairs (Bradley–Terry), `score` completions.
    #[command(subcommand)]
    Reward(reward::RewardCommand),
    /// Direct preference optimisation (DPO, IPO, hinge, robust, SimPO) against a frozen reference.
    Dpo(dpo::DpoArgs),
    /// Kahneman–Tversky optimisation (KTO) on unpaired desirable/undesirable rows against a
    /// frozen reference.
    Kto(kto::KtoArgs),
    /// Policy optimisation against a reward model or command: PPO, RLOO or GRPO.
    Ppo(Box<ppo::PpoArgs>),
    /// What a run will cost: FLOPs, time here (calibrated) and on GPU classes, energy, CO2, price.
    Estimate(Box<estimate::EstimateArgs>),
    /// Compare models on the same prompts (default: built-in edge cases): rewards, KL to the
    /// base, lengths, behaviour across rephrasings; HTML report; optional blind labeling.
    Compare(Box<compare::CompareArgs>),
    /// Run SFT -> labeling candidates -> reward model -> DPO/PPO -> compare from one TOML
    /// config, skipping finished stages.
    Pipeline(pipeline::PipelineArgs),
}

fn main() {
    common::tune_threads();
    common::tune_allocator();
    common::init_logging();
    // The matches say which settings were given on the command line (they override --config).
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = run(cli, settings::leaf(&matches)) {
        eprintln!("error: {}", common::error_line(&e));
        std::process::exit(1);
    }
}

fn run(cli: Cli, m: &clap::ArgMatches) -> Result<()> {
    match cli.command {
        Command::Generate(a) => infer::generate(a),
        Command::Logprobs(a) => infer::logprobs(a),
        Command::Export(a) => infer::export(a),
        Command::Bench(b) => bench::run(b),
        Command::Sft(a) => sft::run(a, m),
        Command::Merge(a) => sft::merge(a),
        Command::Reward(c) => reward::run(c, m),
        Command::Dpo(a) => dpo::run(a, m),
        Command::Kto(a) => kto::run(a, m),
        Command::Ppo(a) => ppo::run(*a, m),
        Command::Estimate(a) => estimate::run(*a),
        Command::Label(a) => label::run(a),
        Command::Compare(a) => compare::run(*a),
        Command::Pipeline(a) => pipeline::run(a),
    }
}
