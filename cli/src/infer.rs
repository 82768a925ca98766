//! `rudder generate`, `rudder logprobs`, `rudder export`.
use crate::common::{load_model, DeviceArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use compare::cost::{SamplingCost, SamplingMeter};
use lm::generate::{generate as run_generate, SamplingConfig};
use lm::jsonl;
use lm::logprobs::CompletionBatch;
use lm::TextOrMessages;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model: HF folder, hub id, or .gguf file.
    #[arg(long)]
    pub model: String,
    /// JSONL (or JSON array) of rows {"prompt": str | messages}.
    #[arg(long, conflicts_with = "prompt")]
    pub prompts: Option<PathBuf>,
    /// One prompt given inline (printed to stdout).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Output JSONL: every input row with "completion" added. Default: stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Apply the chat template to a --prompt string (as one user message).
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// 0 = greedy. With --show-top, give two or more (`--temperature 0.7,1.5`) to see the
    /// next-token distribution under each side by side; the first one samples.
    #[arg(long, default_value = "0", value_delimiter = ',')]
    pub temperature: Vec<f32>,
    /// 0 = off.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when the completion contains this string (repeatable); `\n`, `\t`, `\r` and `\\`
    /// in it are a newline, a tab, a carriage return and a backslash (`--stop "\n\n"`).
    #[arg(long = "stop", value_parser = stop_string)]
    pub stop: Vec<String>,
    /// Rows generated together in one batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Next-token view: after each generated token, print the K most likely next tokens with
    /// their probabilities (after temperature/top-k/top-p) and mark the one sampled.
    #[arg(long, value_name = "K")]
    pub show_top: Option<usize>,
    /// With --show-top: one JSON object per step on stdout instead of the table.
    #[arg(long, requires = "show_top")]
    pub json: bool,
    /// Also write the cost (rows, generated tokens, the cost block) to this JSON file; the
    /// cost lines always go to stderr.
    #[arg(long, value_name = "FILE", conflicts_with = "show_top")]
    pub cost_out: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub cost: cost::CostSettings,
}

fn sampling(a: &GenerateArgs) -> Result<SamplingConfig> {
    let temps_ok = !a.temperature.is_empty() && a.temperature.iter().all(|&t| t >= 0.0);
    if !temps_ok || !(0.0..=1.0).contains(&a.top_p) || a.repetition_penalty <= 0.0 {
        bail!("--temperature must be >= 0, --top-p in [0, 1], --repetition-penalty > 0");
    }
    if a.temperature.len() > 1 && a.show_top.is_none() {
        bail!("several --temperature values are only for the side-by-side view: add --show-top K");
    }
    Ok(SamplingConfig {
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature[0],
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: a.repetition_penalty,
        seed: a.seed,
        stop_strings: a.stop.clone(),
    })
}

/// A `--stop` value with its escapes read as meant.
fn stop_string(s: &str) -> std::result::Result<String, std::convert::Infallible> {
    Ok(lm::generate::unescape(s))
}

/// Reads rows and their "prompt" field.
fn prompt_rows(a: &GenerateArgs) -> Result<Vec<(serde_json::Value, TextOrMessages)>> {
    if let Some(p) = &a.prompt {
        let prompt = if a.chat {
            TextOrMessages::Messages(vec![lm::Message::new("user", p.clone())])
        } else {
            TextOrMessages::Text(p.clone())
        };
        return Ok(vec![(serde_json::json!({ "prompt": prompt }), prompt)]);
    }
    let Some(path) = &a.prompts else {
        bail!("give --prompts FILE or --prompt TEXT");
    };
    let rows = jsonl::read_rows(path).context("--prompts")?;
    rows.into_iter()
        .map(|r| {
            let field = r.value.get("prompt").cloned().ok_or_else(|| {
                anyhow::anyhow!("{}:{}: field `prompt` is missing", path.display(), r.line)
            })?;
            let prompt: TextOrMessages = serde_json::from_value(field).map_err(|e| {
                anyhow::anyhow!("{}:{}: field `prompt`: {e}", path.display(), r.line)
            })?;
            Ok((r.value, prompt))
        })
        .collect()
}

pub fn generate(a: GenerateArgs) -> Result<()> {
    let cfg = sampling(&a)?;
    let rows = prompt_rows(&a)?;
    let opts = a.device.load_options(false)?;
    let p = load_model(&a.model, &opts)?;
    let mut meter = SamplingMeter::start(&opts.device, &p.model.config, &a.cost);
    if let Some(k) = a.show_top {
        return crate::topview::run(&p, &rows, &cfg, &a.temperature, k, a.json);
    }
    let mut out_rows = vec![];
    for chunk in rows.chunks(a.batch_size.max(1)) {
        let ids = chunk
            .iter()
            .map(|(_, p_)| p.tokenizer.encode_prompt(p_))
            .collect::<lm::Result<Vec<_>>>()?;
        let t = std::time::Instant::now();
        let gens = run_generate(&p.model, &p.tokenizer, &ids, &cfg)?;
        meter.batch(
            t,
            ids.iter()
                .zip(&gens)
                .map(|(i, g)| (i.len(), g.tokens.len())),
        );
        for ((row, _), g) in chunk.iter().zip(gens) {
            let mut row = row.clone();
            row["completion"] = g.text.into();
            out_rows.push(row);
        }
    }
    match &a.out {
        Some(path) => jsonl::write_rows(path, &out_rows)?,
        None if a.prompt.is_some() => {
            println!("{}", out_rows[0]["completion"].as_str().unwrap_or(""))
        }
        None => out_rows.iter().for_each(|r| println!("{r}")),
    }
    generation_cost(meter.finish(&a.model), a.cost_out.as_deref())
}

/// Prints the cost lines (stderr) and, with `--cost-out`, writes the cost as JSON.
fn generation_cost(cost: SamplingCost, out: Option<&Path>) -> Result<()> {
    eprintln!(
        "generated {} tokens for {} rows",
        cost.generated_tokens, cost.rows
    );
    for line in cost.cost.lines() {
        eprintln!("{line}");
    }
    if let Some(path) = out {
        let text = serde_json::to_string_pretty(&cost)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct LogprobsArgs {
    #[arg(long)]
    pub model: String,
    /// JSONL of rows {"prompt", "completion"} (strings or message lists).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn logprobs(a: LogprobsArgs) -> Result<()> {
    let rows = jsonl::read_rows(&a.data).context("--data")?;
    let p = load_model(&a.model, &a.device.load_options(false)?)?;
    let mut pairs = vec![];
    for r in &rows {
        let get = |k: &str| -> Result<TextOrMessages> {
            let v = r.value.get(k).cloned().with_context(|| {
                format!("{}:{}: field `{k}` is missing", a.data.display(), r.line)
            })?;
            serde_json::from_value(v)
                .with_context(|| format!("{}:{}: field `{k}`", a.data.display(), r.line))
        };
        let pc = p
            .tokenizer
            .encode_pair(&get("prompt")?, &get("completion")?, false)
            .with_context(|| format!("{}:{}", a.data.display(), r.line))?;
        if pc.completion.is_empty() {
            bail!(
                "{}:{}: field `completion` is empty",
                a.data.display(),
                r.line
            );
        }
        pairs.push(pc);
    }
    let mut out = vec![];
    for (chunk, rows) in pairs
        .chunks(a.batch_size.max(1))
        .zip(rows.chunks(a.batch_size.max(1)))
    {
        let batch = CompletionBatch::new(chunk, p.tokenizer.pad_id)?;
        let (sum, n) = batch.sequence_logprobs(&p.model)?;
        let (sum, n): (Vec<f32>, Vec<f32>) = (sum.to_vec1()?, n.to_vec1()?);
        for (i, r) in rows.iter().enumerate() {
            let mut v = r.value.clone();
            v["logprob_sum"] = (sum[i] as f64).into();
            v["logprob_mean"] = (sum[i] as f64 / n[i] as f64).into();
            v["num_tokens"] = (n[i] as u64).into();
            out.push(v);
        }
    }
    jsonl::write_rows(&a.out, &out)?;
    eprintln!("wrote {} rows to {}", out.len(), a.out.display());
    Ok(())
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn export(a: ExportArgs) -> Result<()> {
    let p = load_model(&a.model, &lm::LoadOptions::default())?;
    lm::save::save_pretrained(&p.model, &p.tokenizer, &a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
