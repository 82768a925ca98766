//! `rudder estimate`'s measurements: the model, the data's token count, and this machine's
//! speed and power (a short calibration run, or the stored last `rudder bench train`).
use super::{invalid, EstimateSettings};
use crate::Result;
use candle_core::{Device, Var};
use cost::{model_config, Calibration, CostSettings, FlopModel, StageKind};
use lm::{CausalLm, ModelConfig, Tokenizer};
use std::path::Path;

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
pub fn load(a: &EstimateSettings, load: &lm::LoadOptions) -> Result<Loaded> {
    let opts = lm::LoadOptions {
        trainable: true,
        ..load.clone()
    };
    let device = opts.device.clone();
    let is_json = Path::new(&a.model).extension().is_some_and(|e| e == "json");
    if a.from_bench && (a.data.is_none() || is_json) {
        let config =
            model_config(&a.model).map_err(|e| invalid(format!("model `{}`: {e}", a.model)))?;
        return Ok(Loaded {
            config,
            model: None,
            tokenizer: None,
            device,
        });
    }
    if is_json {
        let config =
            model_config(&a.model).map_err(|e| invalid(format!("model `{}`: {e}", a.model)))?;
        let (m, p) = CausalLm::random(config.clone(), &device, opts.precision, true, 0)?;
        return Ok(Loaded {
            config,
            model: Some((m, p)),
            tokenizer: None,
            device,
        });
    }
    let p = train::load_model(&a.model, &opts)?;
    Ok(Loaded {
        config: p.model.config.clone(),
        model: Some((p.model, p.params)),
        tokenizer: Some(p.tokenizer),
        device,
    })
}

/// `(tokens per epoch, mean row length, note)` of the stage's data file.
pub fn count_tokens(
    a: &EstimateSettings,
    path: &Path,
    stage: StageKind,
    m: &Loaded,
) -> Result<(u64, f64, String)> {
    let Some(tok) = &m.tokenizer else {
        return Err(invalid(
            "--data needs the model's tokenizer: give a model folder, hub id or .gguf",
        ));
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
                    .map_err(|e| invalid(format!("{}:{}: {e}", path.display(), ex.line)))?;
                rows.extend([cut(p.len() + c.len()), cut(p.len() + r.len())]);
            }
            rows
        }
        StageKind::Kto => {
            let file = data::unpaired::read_unpaired(path, &Default::default())?;
            let mut rows = vec![];
            for ex in &file.examples {
                let (p, c) = data::unpaired::tokenize_unpaired(tok, ex)
                    .map_err(|e| invalid(format!("{}:{}: {e}", path.display(), ex.line)))?;
                // The row and its mismatched KL row (another row's completion: about as long).
                rows.extend([cut(p.len() + c.len()); 2]);
            }
            rows
        }
        StageKind::Ppo => {
            let mut rows = vec![];
            for r in lm::jsonl::read_rows(path)? {
                let at = format!("{}:{}: field `prompt`", path.display(), r.line);
                let prompt = r.value.get("prompt").cloned();
                let prompt = prompt.ok_or_else(|| invalid(format!("{at} is missing")))?;
                let prompt: lm::TextOrMessages = serde_json::from_value(prompt).map_err(|_| {
                    invalid(format!("{at}: expected a string or a list of messages"))
                })?;
                rows.push(cut(tok.encode_prompt(&prompt)?.len() + a.response_len));
            }
            rows
        }
    };
    if rows.is_empty() {
        return Err(invalid(format!("{}: no rows", path.display())));
    }
    let tokens: u64 = rows.iter().sum();
    let note = format!(" ({} rows of {})", rows.len(), path.display());
    Ok((tokens, tokens as f64 / rows.len() as f64, note))
}

/// This machine's speed and power: the stored bench (--from-bench) or a calibration run.
pub fn this_machine(
    a: &EstimateSettings,
    seq: usize,
    m: Loaded,
    settings: &CostSettings,
) -> Result<Calibration> {
    if a.from_bench {
        return cost::calibrate::load_bench().map_err(|e| invalid(format!("--from-bench: {e}")));
    }
    let Some((model, params)) = m.model else {
        return Err(invalid("no weights to calibrate with"));
    };
    if !(a.calib_batch > 0 && seq > 1 && a.calib_steps > 0) {
        return Err(invalid(
            "--calib-batch, --calib-seq and --calib-steps must be > 0",
        ));
    }
    let mut step = train::synthetic::SyntheticStep::new(&model, params, a.calib_batch, seq, 1e-6)?;
    let fm = FlopModel {
        dims: cost::model_dims(&model.config),
        stage: StageKind::Sft,
        recompute: false,
    };
    let flops = cost::calibrate::step_flops(&fm, a.calib_batch, seq);
    let what = format!("{}×{seq} tokens", a.calib_batch);
    let run = || step.run(&model).map(|_| ());
    Ok(cost::calibrate::calibrate(
        &m.device,
        settings,
        flops,
        a.calib_steps,
        &what,
        run,
    )?)
}
