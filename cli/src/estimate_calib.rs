//! `rudder estimate`'s measurements: the model, the data's token count, and this machine's
//! speed and power (a short calibration run, or the stored last `rudder bench train`).
use super::{dims, model_config, EstimateArgs};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Var};
use lm::{CausalLm, ModelConfig, Tokenizer};
use std::path::{Path, PathBuf};
use std::time::Instant;
use train::cost::{Calibration, CostSettings, EnergyKind, FlopModel, Meter, StageKind};

/// The model as far as the estimate needs it.
pub struct Loaded {
    pub config: ModelConfig,
    /// Weights for calibration (none with --from-bench).
    model: Option<(CausalLm, Vec<(String, Var)>)>,
    tokenizer: Option<Tokenizer>,
    device: Device,
}

/// Loads the config, and the weights (trainable, for calibration) and tokenizer when needed. A
/// config.json gets random weights and no tokenizer.
pub fn load(a: &EstimateArgs) -> Result<Loaded> {
    let opts = a.device.load_options(true)?;
    let device = opts.device.clone();
    let is_json = Path::new(&a.model).extension().is_some_and(|e| e == "json");
    if a.from_bench && (a.data.is_none() || is_json) {
        let config = model_config(&a.model)?;
        return Ok(Loaded {
            config,
            model: None,
            tokenizer: None,
            device,
        });
    }
    if is_json {
        let config = model_config(&a.model)?;
        let (m, p) = CausalLm::random(config.clone(), &device, opts.precision, true, 0)?;
        return Ok(Loaded {
            config,
            model: Some((m, p)),
            tokenizer: None,
            device,
        });
    }
    let p = crate::common::load_model(&a.model, &opts)?;
    Ok(Loaded {
        config: p.model.config.clone(),
        model: Some((p.model, p.params)),
        tokenizer: Some(p.tokenizer),
        device,
    })
}

/// `(tokens per epoch, mean row length, note)` of the stage's data file.
pub fn count_tokens(
    a: &EstimateArgs,
    path: &Path,
    stage: StageKind,
    m: &Loaded,
) -> Result<(u64, f64, String)> {
    let Some(tok) = &m.tokenizer else {
        bail!("--data needs the model's tokenizer: give a model folder, hub id or .gguf");
    };
    let cut = |n: usize| n.min(a.max_seq_len) as u64;
    let rows: Vec<u64> = match stage {
        StageKind::Sft => {
            let file = data::sft::read_sft(path, false)?;
            file.rows
                .iter()
                .map(|r| Ok(cut(sft::encode(tok, &r.example, false)?.ids.len())))
                .collect::<lm::Result<_>>()?
        }
        StageKind::Reward | StageKind::Dpo => {
            let prefs = data::prefs::read_prefs(path, &Default::default())?;
            let mut rows = vec![];
            for ex in &prefs.examples {
                let (p, c, r) = data::prefs::tokenize_pair(tok, ex)
                    .with_context(|| format!("{}:{}", path.display(), ex.line))?;
                rows.extend([cut(p.len() + c.len()), cut(p.len() + r.len())]);
            }
            rows
        }
        StageKind::Ppo => {
            let mut rows = vec![];
            for r in lm::jsonl::read_rows(path)? {
                let prompt = r.value.get("prompt").cloned().with_context(|| {
                    format!("{}:{}: field `prompt` is missing", path.display(), r.line)
                })?;
                let prompt: lm::TextOrMessages = serde_json::from_value(prompt)
                    .with_context(|| format!("{}:{}: field `prompt`", path.display(), r.line))?;
                rows.push(cut(tok.encode_prompt(&prompt)?.len() + a.response_len));
            }
            rows
        }
    };
    anyhow::ensure!(!rows.is_empty(), "{}: no rows", path.display());
    let tokens: u64 = rows.iter().sum();
    let note = format!(" ({} rows of {})", rows.len(), path.display());
    Ok((tokens, tokens as f64 / rows.len() as f64, note))
}

/// This machine's speed and power: the stored bench (--from-bench) or a calibration run.
pub fn this_machine(
    a: &EstimateArgs,
    seq: usize,
    m: Loaded,
    settings: &CostSettings,
) -> Result<Calibration> {
    if a.from_bench {
        let path = bench_path()?;
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "--from-bench: reading {} (run `rudder bench train` first)",
                path.display()
            )
        })?;
        return serde_json::from_str(&text).with_context(|| format!("{}", path.display()));
    }
    let Some((model, params)) = m.model else {
        bail!("no weights to calibrate with");
    };
    calibrate(a, seq, &model, params, &m.device, settings)
}

/// Times `calib_steps` training steps (forward, backward, AdamW) on random tokens after one
/// warm-up step, metering energy as a run does.
fn calibrate(
    a: &EstimateArgs,
    seq: usize,
    model: &CausalLm,
    params: Vec<(String, Var)>,
    device: &Device,
    settings: &CostSettings,
) -> Result<Calibration> {
    anyhow::ensure!(
        a.calib_batch > 0 && seq > 1 && a.calib_steps > 0,
        "--calib-* > 0"
    );
    let params = train::Params::new(params).context("collecting parameters")?;
    let trainable = params.num_elements() as u64;
    let mut opt = train::AdamW::new(train::AdamWConfig::default())?;
    let vocab = model.config.vocab_size as u64;
    let mut rng = train::data::SplitMix64::new(7);
    let pcs: Vec<lm::logprobs::PromptCompletion> = (0..a.calib_batch)
        .map(|_| {
            let ids: Vec<u32> = (0..seq).map(|_| 3 + rng.below(vocab - 3) as u32).collect();
            lm::logprobs::PromptCompletion {
                prompt: ids[..1].to_vec(),
                completion: ids[1..].to_vec(),
            }
        })
        .collect();
    let batch = lm::logprobs::CompletionBatch::new(&pcs, 0)?;
    let mut meter = None;
    for step in 0..=a.calib_steps {
        if step == 1 {
            meter = Some((Meter::start(device, settings.clone()), Instant::now()));
        }
        // (B, T, V) logits -> mean next-token NLL -> backward -> AdamW
        let logits = model.forward(&batch.input)?;
        let (lp, mask) = batch.logprobs(&logits)?;
        let loss = (lp.sum_all()?.neg()? / mask.sum_all()?.to_scalar::<f32>()? as f64)?;
        let grads = loss.backward()?;
        opt.step(
            &params,
            &train::GradAccumulator::from_store(&params, &grads)?,
            1e-6,
        )?;
        if let Some((m, _)) = meter.as_mut() {
            m.poll();
        }
    }
    let (mut meter, t0) = meter.context("calibration ran no timed step")?;
    let secs = t0.elapsed().as_secs_f64();
    let fm = FlopModel {
        dims: dims(&model.config),
        stage: StageKind::Sft,
        recompute: false,
    };
    let tokens = (a.calib_batch * seq) as u64;
    let flops = fm.step(tokens, a.calib_batch, trainable, true).total() * a.calib_steps as f64;
    let r = meter.report();
    Ok(Calibration {
        flop_per_s: flops / secs,
        watts: r.avg_power_w,
        energy: r.energy,
        source: format!(
            "calibration: {} steps of {}×{} tokens in {secs:.1} s, {:.3e} FLOP/s, {:.0} W ({})",
            a.calib_steps,
            a.calib_batch,
            seq,
            flops / secs,
            r.avg_power_w,
            r.energy_source
        ),
    })
}

/// Where `rudder bench train` keeps its last result: `$RUDDER_CACHE`, else
/// `$XDG_CACHE_HOME/rudder`, else `~/.cache/rudder`.
fn bench_path() -> Result<PathBuf> {
    let dir = match (
        std::env::var_os("RUDDER_CACHE"),
        std::env::var_os("XDG_CACHE_HOME"),
    ) {
        (Some(d), _) => PathBuf::from(d),
        (None, Some(x)) => PathBuf::from(x).join("rudder"),
        (None, None) => {
            let home = std::env::var_os("HOME").context("no HOME for the bench cache")?;
            PathBuf::from(home).join(".cache/rudder")
        }
    };
    Ok(dir.join("last-bench-train.json"))
}

/// Stores a `rudder bench train` result (`step_s` per step of `batch × seq` tokens) as the
/// calibration `rudder estimate --from-bench` uses. Power: `--device-watts` defaults, estimated.
pub fn store_bench(model: &CausalLm, device: &Device, batch: usize, seq: usize, step_s: f64) {
    let fm = FlopModel {
        dims: dims(&model.config),
        stage: StageKind::Sft,
        recompute: false,
    };
    let flops = fm.step((batch * seq) as u64, batch, u64::MAX, true).total();
    let watts = match device {
        Device::Cpu => train::cost::cpu_threads() as f64 * train::cost::CPU_WATTS_PER_THREAD,
        _ => train::cost::GPU_DEFAULT_WATTS,
    };
    let c = Calibration {
        flop_per_s: flops / step_s,
        watts,
        energy: EnergyKind::Estimated,
        source: format!(
            "rudder bench train: {batch}×{seq} tokens in {step_s:.2} s/step, {:.3e} FLOP/s; \
             power estimated at {watts:.0} W",
            flops / step_s
        ),
    };
    let written = bench_path().and_then(|p| {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&p, serde_json::to_vec_pretty(&c)?)?;
        Ok(p)
    });
    match written {
        Ok(p) => eprintln!("stored for `rudder estimate --from-bench`: {}", p.display()),
        Err(e) => eprintln!("could not store the bench result: {e:#}"),
    }
}
