//! `rudder bench train|generate`: throughput measurements (tokens/s, peak memory, MFU).
use crate::common::{load_model, DeviceArgs};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use lm::generate::{generate, SamplingConfig};
use lm::{CausalLm, ModelConfig, Tokenizer};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Forward + backward + AdamW steps on random tokens.
    Train(TrainBench),
    /// Batched sampling with the KV cache.
    Generate(GenBench),
}

/// Which model: a real one, or random weights from a config.json alone.
#[derive(Args, Debug)]
pub struct ModelPick {
    /// Model: HF folder, hub id or .gguf.
    #[arg(long, required_unless_present = "config")]
    pub model: Option<String>,
    /// A config.json to build a random-init model from (with --random-init).
    #[arg(long, requires = "random_init")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub random_init: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct TrainBench {
    #[command(flatten)]
    pub pick: ModelPick,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// Measured steps (one extra warm-up step runs first).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
}

#[derive(Args, Debug)]
pub struct GenBench {
    #[command(flatten)]
    pub pick: ModelPick,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    #[arg(long, default_value_t = 16)]
    pub prompt_len: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Nucleus sampling with temperature > 0; 1 samples the full vocabulary without sorting it,
    /// as PPO rollouts do.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Prompts (JSONL or JSON array of `{"prompt": str | messages}`, templated) instead of
    /// random ids: the first `--batch` rows, each row stopping at EOS, as a PPO rollout samples
    /// them (what `scripts/bench_hf_generate.py` runs in transformers).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Fresh LoRA adapters of this rank on `--lora-targets` (a LoRA policy's rollout).
    #[arg(long)]
    pub lora_r: Option<usize>,
    /// Projections that get adapters with `--lora-r`.
    #[arg(long, value_delimiter = ',', default_value = "all-linear")]
    pub lora_targets: Vec<String>,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Train(b) => bench_train(b),
        BenchCommand::Generate(b) => bench_generate(b),
    }
}

struct Built {
    model: CausalLm,
    params: Vec<(String, candle_core::Var)>,
    tokenizer: Option<Tokenizer>,
}

fn build(pick: &ModelPick, trainable: bool) -> Result<Built> {
    let opts = pick.device.load_options(trainable)?;
    if let (Some(cfg), true) = (&pick.config, pick.random_init) {
        let config = ModelConfig::from_file(cfg)?;
        let (model, params) = CausalLm::random(config, &opts.device, opts.precision, trainable, 0)?;
        return Ok(Built {
            model,
            params,
            tokenizer: None,
        });
    }
    let Some(spec) = &pick.model else {
        anyhow::bail!("give --model, or --config with --random-init")
    };
    let p = load_model(spec, &opts)?;
    Ok(Built {
        model: p.model,
        params: p.params,
        tokenizer: Some(p.tokenizer),
    })
}

fn bench_train(b: TrainBench) -> Result<()> {
    let m = build(&b.pick, true)?;
    let mut step = train::synthetic::SyntheticStep::new(&m.model, m.params, b.batch, b.seq, 1e-5)?;
    let device = b.pick.device.device()?;
    let memory = cost::PeakDeviceMemory::start(&device);
    let mut times = vec![];
    for i in 0..=b.steps {
        let t0 = Instant::now();
        let loss = step.run(&m.model)?;
        // GPU kernels run asynchronously: wait for the step's work before timing it.
        device.synchronize()?;
        let dt = t0.elapsed().as_secs_f64();
        eprintln!("step {i}: loss {loss:.4} {dt:.2}s");
        if i > 0 {
            times.push(dt);
        }
    }
    let tokens = (b.batch * b.seq) as f64;
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let fm = cost::FlopModel {
        dims: cost::model_dims(&m.model.config),
        stage: cost::StageKind::Sft,
        recompute: false,
    };
    let flops = cost::calibrate::step_flops(&fm, b.batch, b.seq);
    let peak = cost::peak_flops(&device);
    println!(
        "{}",
        json!({
            "bench": "train", "device": b.pick.device.device.as_deref().unwrap_or("default"),
            "dtype": b.pick.device.dtype, "batch": b.batch, "seq": b.seq, "steps": b.steps,
            "tokens_per_s": tokens / mean, "step_s": mean, "peak_rss_mib": cost::peak_rss_mib(),
            "peak_device_mib": memory.finish(), "params": m.model.config.num_parameters(),
            "model_tflop_per_s": flops / mean / 1e12,
            "mfu": (peak.peak_flop_s > 0.0).then(|| flops / mean / peak.peak_flop_s),
            "peak": peak.peak_source,
        })
    );
    match cost::calibrate::store_bench(&fm, &device, b.batch, b.seq, mean) {
        Ok(p) => eprintln!("stored for `rudder estimate --from-bench`: {}", p.display()),
        Err(e) => eprintln!("could not store the bench result: {e}"),
    }
    Ok(())
}

fn bench_generate(b: GenBench) -> Result<()> {
    let mut m = build(&b.pick, false)?;
    let (prompts, tok) = bench_inputs(&b, &mut m)?;
    let cfg = SamplingConfig {
        max_new_tokens: b.new_tokens,
        temperature: b.temperature,
        top_p: if b.temperature > 0.0 { b.top_p } else { 1.0 },
        seed: 0,
        ..Default::default()
    };
    let memory = cost::PeakDeviceMemory::start(&b.pick.device.device()?);
    let mut times = vec![];
    for r in 0..=b.repeats {
        let t0 = Instant::now();
        let cfg = SamplingConfig {
            seed: r as u64,
            ..cfg.clone()
        };
        let out = generate(&m.model, &tok, &prompts, &cfg)?;
        let dt = t0.elapsed().as_secs_f64();
        let n: usize = out.iter().map(|g| g.tokens.len()).sum();
        eprintln!("run {r}: {n} new tokens in {dt:.2}s");
        if r > 0 {
            times.push((n, dt));
        }
    }
    let (n, t): (usize, f64) = times.iter().fold((0, 0.0), |a, x| (a.0 + x.0, a.1 + x.1));
    println!(
        "{}",
        json!({
            "bench": "generate", "device": b.pick.device.device.as_deref().unwrap_or("default"),
            "dtype": b.pick.device.dtype, "batch": b.batch, "new_tokens": b.new_tokens,
            "prompts": b.prompts, "lora_r": b.lora_r,
            "new_tokens_per_s": n as f64 / t, "peak_rss_mib": cost::peak_rss_mib(),
            "peak_device_mib": memory.finish(),
        })
    );
    Ok(())
}

/// The prompts' ids and the tokenizer; attaches the adapters `--lora-r` asks for.
fn bench_inputs(b: &GenBench, m: &mut Built) -> Result<(Vec<Vec<u32>>, Tokenizer)> {
    let mut tok = match m.tokenizer.take() {
        Some(t) => t,
        None => {
            Tokenizer::placeholder(m.model.config.vocab_size).context("placeholder tokenizer")?
        }
    };
    if let Some(r) = b.lora_r {
        let spec = lm::lora::LoraSpec {
            r,
            alpha: 2.0 * r as f64,
            dropout: 0.0,
            targets: b.lora_targets.clone(),
            rslora: false,
        };
        m.model.attach_lora(&spec, 0).context("--lora-r")?;
    }
    let prompts = match &b.prompts {
        Some(path) => {
            let (rows, _) = ppo::load_prompts(path, &tok, usize::MAX)?;
            if rows.len() < b.batch {
                anyhow::bail!(
                    "{} has {} prompts, --batch asks for {}",
                    path.display(),
                    rows.len(),
                    b.batch
                );
            }
            rows.into_iter().take(b.batch).map(|p| p.ids).collect()
        }
        None => {
            // Fixed length runs: no EOS stopping.
            tok.eos_ids.clear();
            let vocab = m.model.config.vocab_size.min(tok.vocab_size());
            train::synthetic::random_rows(b.batch, b.prompt_len, vocab, 2)
        }
    };
    Ok((prompts, tok))
}
