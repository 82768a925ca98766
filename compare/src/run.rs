//! Sampling every model on the same prompts with the same seeds, each model's log-probs of its
//! own samples under itself and under the base (the first model), and reward scores. One model
//! is in memory at a time.
use crate::cost::{SamplingCost, SamplingMeter};
use crate::error::{Error, Result};
use crate::prompts::EvalPrompt;
use candle_core::DType;
use cost::CostSettings;
use lm::generate::{generate, Generation, SamplingConfig};
use lm::logprobs::{CompletionBatch, PromptCompletion};
use lm::{LoadOptions, Pretrained, TextOrMessages};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use train::Input;

/// What `rudder compare` takes besides the models and the output folder: its flags, and the
/// `[compare]` section of a pipeline config (the same names, with `_`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct CompareSettings {
    /// Prompt rows {"prompt", "id"?, "group"?, "variant"?, "category"?} [the built-in edge-case
    /// set].
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Reward model scoring every completion (a `rudder reward train` output) [none: no
    /// rewards].
    #[arg(long)]
    pub reward_model: Option<String>,
    /// Completions per prompt and model; sample j uses seed + j for every model.
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// New tokens per completion.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// Sample from the k most likely tokens; 0 = off.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Seed of the first sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per generation and scoring batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

impl Default for CompareSettings {
    fn default() -> Self {
        lm::settings::defaults()
    }
}

impl CompareSettings {
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, why: &str| Err(Error::Invalid(format!("field `{f}`: {why}")));
        if self.samples == 0 {
            return bad("samples", "must be at least 1");
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens", "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.temperature < 0.0 || !self.temperature.is_finite() {
            return bad("temperature", "must be >= 0 (0 = greedy)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if self.repetition_penalty <= 0.0 {
            return bad("repetition_penalty", "must be > 0");
        }
        Ok(())
    }

    /// The reward model and the prompt file, when set (the models are `--model`'s).
    pub fn inputs(&self) -> Vec<Input<'_>> {
        let files = [("prompts", self.prompts.as_deref())];
        train::inputs::set(&[("reward_model", self.reward_model.as_deref())], &files)
    }

    fn sampling(&self, j: usize) -> SamplingConfig {
        SamplingConfig {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed.wrapping_add(j as u64),
            stop_strings: vec![],
        }
    }
}

/// Every model, the reward model and the prompt file are there (no weights read), each named by
/// its flag: checked before the first model samples, not after.
pub fn check_inputs(models: &[ModelSpec], s: &CompareSettings) -> Result<()> {
    let mut inputs: Vec<Input> = models
        .iter()
        .map(|m| Input::Model {
            key: "model",
            spec: &m.spec,
        })
        .collect();
    inputs.extend(s.inputs());
    Ok(train::check_inputs(&inputs, train::inputs::flag)?)
}

/// `name=spec` from `--model`; the first model is the base.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpec {
    pub name: String,
    pub spec: String,
}

impl std::str::FromStr for ModelSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once('=') {
            Some((n, p)) if !n.trim().is_empty() && !p.trim().is_empty() => Ok(ModelSpec {
                name: n.trim().into(),
                spec: p.trim().into(),
            }),
            _ => Err(format!("`{s}`: expected NAME=MODEL, e.g. base=runs/sft")),
        }
    }
}

/// One completion: a row of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub model: String,
    pub prompt_id: String,
    pub group: String,
    pub variant: String,
    pub category: String,
    pub prompt: TextOrMessages,
    /// Index of the sample for this prompt; its seed is `seed + sample`.
    pub sample: usize,
    pub completion: String,
    /// New tokens, including the EOS that ended it.
    pub completion_tokens: usize,
    /// Ended on EOS (not cut at max_new_tokens).
    pub finished: bool,
    /// Σ over completion tokens of log p_model.
    pub logprob: f64,
    /// Σ over the same tokens of log p_base.
    pub logprob_base: f64,
    /// `logprob - logprob_base`: one-sample estimate of KL(model ‖ base) on this prompt.
    pub kl: f64,
    pub reward: Option<f64>,
    /// Heuristic: the opening reads like a refusal or an apology (see `is_refusal`).
    pub refusal: bool,
    #[serde(skip)]
    pub ids: Option<PromptCompletion>,
}

/// What [`run_models`] returns.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub samples: Vec<Sample>,
    /// Each model's generation cost, in model order.
    pub costs: Vec<SamplingCost>,
}

/// Samples, log-probs and rewards for every model (`models[0]` is the base), and what each
/// model's sampling cost under the `cost` settings.
pub fn run_models(
    models: &[ModelSpec],
    prompts: &[EvalPrompt],
    s: &CompareSettings,
    opts: &LoadOptions,
    cost: &CostSettings,
) -> Result<Sampled> {
    s.validate()?;
    if models.is_empty() {
        return Err(Error::Invalid("give at least one model".into()));
    }
    for (i, m) in models.iter().enumerate() {
        if models[..i].iter().any(|o| o.name == m.name) {
            return Err(Error::Invalid(format!(
                "--model: the name `{}` is used twice",
                m.name
            )));
        }
    }
    let (mut all, mut costs) = (vec![], vec![]);
    for (i, m) in models.iter().enumerate() {
        tracing::info!("compare: sampling {} ({})", m.name, m.spec);
        let pre = load(&m.spec, opts)?;
        let (mut rows, c) = sample_model(&pre, &m.name, prompts, s, cost)?;
        costs.push(c);
        if i == 0 {
            rows.iter_mut().for_each(|r| r.logprob_base = r.logprob);
        }
        all.extend(rows);
    }
    if models.len() > 1 {
        tracing::info!("compare: scoring every model's samples under the base");
        let base = load(&models[0].spec, opts)?;
        let others: Vec<&mut Sample> = all
            .iter_mut()
            .filter(|r| r.model != models[0].name)
            .collect();
        base_logprobs(&base, others, s.batch_size)?;
    }
    for r in &mut all {
        r.kl = r.logprob - r.logprob_base;
    }
    if let Some(rm) = &s.reward_model {
        tracing::info!("compare: scoring with the reward model {rm}");
        score_rewards(rm, &mut all, opts, s.batch_size)?;
    }
    Ok(Sampled {
        samples: all,
        costs,
    })
}

fn load(spec: &str, opts: &LoadOptions) -> Result<Pretrained> {
    lm::load(spec, opts).map_err(|e| Error::Invalid(format!("loading model `{spec}`: {e}")))
}

/// Samples `s.samples` completions per prompt; the meter covers the generation only (not the
/// log-prob pass that follows).
fn sample_model(
    pre: &Pretrained,
    name: &str,
    prompts: &[EvalPrompt],
    s: &CompareSettings,
    cost: &CostSettings,
) -> Result<(Vec<Sample>, SamplingCost)> {
    let ids = prompts
        .iter()
        .map(|p| pre.tokenizer.encode_prompt(&p.prompt))
        .collect::<lm::Result<Vec<_>>>()?;
    let mut meter = SamplingMeter::start(pre.model.device(), &pre.model.config, cost);
    let mut rows = vec![];
    for j in 0..s.samples {
        let cfg = s.sampling(j);
        for (chunk_i, chunk) in ids.chunks(s.batch_size).enumerate() {
            let t = Instant::now();
            let gens = generate(&pre.model, &pre.tokenizer, chunk, &cfg)?;
            meter.batch(
                t,
                chunk
                    .iter()
                    .zip(&gens)
                    .map(|(p, g)| (p.len(), g.tokens.len())),
            );
            for (k, g) in gens.into_iter().enumerate() {
                let i = chunk_i * s.batch_size + k;
                rows.push(new_sample(name, &prompts[i], &ids[i], j, g));
            }
        }
    }
    let cost = meter.finish(name);
    let pcs: Vec<PromptCompletion> = rows.iter().map(|r| r.ids.clone().unwrap()).collect();
    let lps = sequence_logprobs(pre, &pcs, s.batch_size)?;
    rows.iter_mut().zip(lps).for_each(|(r, lp)| r.logprob = lp);
    Ok((rows, cost))
}

/// Sample `j` of prompt `p` (token ids `prompt_ids`) by model `name`, before scoring.
fn new_sample(name: &str, p: &EvalPrompt, prompt_ids: &[u32], j: usize, g: Generation) -> Sample {
    Sample {
        model: name.into(),
        prompt_id: p.id.clone(),
        group: p.group.clone(),
        variant: p.variant.clone(),
        category: p.category.clone(),
        prompt: p.prompt.clone(),
        sample: j,
        refusal: is_refusal(&g.text),
        completion: g.text,
        completion_tokens: g.tokens.len(),
        finished: g.finished,
        logprob: 0.0,
        logprob_base: 0.0,
        kl: 0.0,
        reward: None,
        ids: Some(PromptCompletion {
            prompt: prompt_ids.to_vec(),
            completion: g.tokens,
        }),
    }
}

/// Σ log p of each row's completion tokens, `batch` rows per forward pass; an empty
/// completion scores 0.
fn sequence_logprobs(
    pre: &Pretrained,
    rows: &[PromptCompletion],
    batch: usize,
) -> Result<Vec<f64>> {
    let mut out = vec![0.0; rows.len()];
    let live: Vec<usize> = (0..rows.len())
        .filter(|&i| !rows[i].completion.is_empty())
        .collect();
    for chunk in live.chunks(batch) {
        let b: Vec<PromptCompletion> = chunk.iter().map(|&i| rows[i].clone()).collect();
        let cb = CompletionBatch::new(&b, pre.tokenizer.pad_id)?;
        let (sum, _) = cb.sequence_logprobs(&pre.model)?;
        for (&i, v) in chunk
            .iter()
            .zip(sum.to_dtype(DType::F32)?.to_vec1::<f32>()?)
        {
            out[i] = v as f64;
        }
    }
    Ok(out)
}

/// Log-probs of other models' samples under the base: the same token ids when the base
/// tokenizes the prompt identically (same tokenizer), else the completion text re-tokenized.
fn base_logprobs(base: &Pretrained, rows: Vec<&mut Sample>, batch: usize) -> Result<()> {
    let vocab = base.tokenizer.vocab_size() as u32;
    let mut pcs = Vec::with_capacity(rows.len());
    for r in &rows {
        let ids = r.ids.as_ref().expect("sampled rows keep their ids");
        let same = base.tokenizer.encode_prompt(&r.prompt)? == ids.prompt
            && ids.completion.iter().all(|&t| t < vocab);
        pcs.push(if same {
            ids.clone()
        } else {
            let c = TextOrMessages::Text(r.completion.clone());
            base.tokenizer.encode_pair(&r.prompt, &c, false)?
        });
    }
    let lps = sequence_logprobs(base, &pcs, batch)?;
    for (r, lp) in rows.into_iter().zip(lps) {
        r.logprob_base = lp;
    }
    Ok(())
}

fn score_rewards(spec: &str, rows: &mut [Sample], opts: &LoadOptions, batch: usize) -> Result<()> {
    let mut rm = reward_model::RewardModel::load(spec, opts)
        .map_err(|e| Error::Invalid(format!("loading reward model `{spec}`: {e}")))?;
    rm.score_batch_size = batch;
    let path = Path::new("results.jsonl");
    let ids = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let value = serde_json::json!({ "prompt": r.prompt, "completion": r.completion });
            reward_model::score_rows::row_ids(&rm, path, &lm::jsonl::Row { line: i + 1, value })
        })
        .collect::<reward_model::Result<Vec<_>>>()?;
    for (r, v) in rows.iter_mut().zip(rm.score(&ids)?) {
        r.reward = Some(v as f64);
    }
    Ok(())
}

/// Openings that read as a refusal or apology. A heuristic for the report's behaviour table,
/// not a classifier: it looks at the first 200 characters only.
pub fn is_refusal(text: &str) -> bool {
    const CUES: [&str; 14] = [
        "i can't",
        "i cannot",
        "i can not",
        "i won't",
        "i will not",
        "i'm sorry",
        "i am sorry",
        "i'm not able",
        "i am not able",
        "i'm unable",
        "i am unable",
        "as an ai",
        "i must decline",
        "i apologi",
    ];
    let head: String = text.chars().take(200).collect::<String>().to_lowercase();
    let head = head.replace('\u{2019}', "'");
    CUES.iter().any(|c| head.contains(c))
}

/// Writes `results.jsonl` (one [`Sample`] per line).
pub fn write_results(path: &Path, rows: &[Sample]) -> Result<()> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Reads `results.jsonl` back (for re-rendering a report or pushing to labeling).
pub fn read_results(path: &Path) -> Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Data {
                path: path.display().to_string(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}
