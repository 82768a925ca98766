//! Candidate responses for labeling: `n` samples per prompt from a model, imported into a
//! labeling project as comparisons (`rudder label generate`, the pipeline's `[candidates]`).
use crate::{Error, Result};
use lm::generate::{generate, SamplingConfig};
use lm::{jsonl, TextOrMessages};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The settings of `rudder label generate` and of the pipeline's `[candidates]` section (the
/// same names, with `_`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct CandidateSettings {
    /// Labeling database: a path or a sqlite:// URL (required).
    #[arg(long, env = "RUDDER_LABEL_DB")]
    pub db: Option<String>,
    /// Project to import into (required; it must exist: `rudder label create-project`).
    #[arg(long)]
    pub project: Option<String>,
    /// Model: HF folder, hub id or .gguf (required).
    #[arg(long)]
    pub model: Option<String>,
    /// JSONL rows {"prompt": str | messages} (required).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Responses per prompt (2 or more; a ranking project needs at least its K).
    #[arg(long, default_value_t = 2)]
    pub n: usize,
    /// New tokens per response.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature (the responses must differ, so > 0).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Seed of the first response's sampling (the j-th uses seed + j).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prompts sampled together.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

impl Default for CandidateSettings {
    fn default() -> Self {
        lm::settings::defaults()
    }
}

impl CandidateSettings {
    /// The model and the prompt file, when set.
    pub fn inputs(&self) -> Vec<train::Input<'_>> {
        let files = [("prompts", self.prompts.as_deref())];
        train::inputs::set(&[("model", self.model.as_deref())], &files)
    }
}

/// A required setting, or an error naming it.
fn required<'a, T: ?Sized>(v: Option<&'a T>, field: &str) -> Result<&'a T> {
    let flag = field.replace('_', "-");
    v.ok_or_else(|| Error::Invalid(format!("candidates: `{field}` (--{flag}) is required")))
}

/// Samples `n` responses for every prompt and imports them into the project; returns the
/// import's counts. Checks the project (and its ranking size) before sampling, which takes
/// minutes.
pub fn generate_candidates(
    s: &CandidateSettings,
    opts: &lm::LoadOptions,
) -> Result<labeling_ui::ImportReport> {
    let (db, project) = (
        required(s.db.as_deref(), "db")?,
        required(s.project.as_deref(), "project")?,
    );
    if s.n < 2 || s.temperature <= 0.0 {
        return Err(Error::Invalid(
            "--n must be at least 2 and --temperature above 0 (the responses must differ)".into(),
        ));
    }
    train::check_inputs(&s.inputs(), train::inputs::flag)?;
    let rt = tokio::runtime::Runtime::new().map_err(Error::io("tokio runtime"))?;
    let info = rt.block_on(async {
        let pool = labeling_ui::db::open(db).await?;
        labeling_ui::db::project_info(&pool, project).await
    })?;
    if let Some(k) = info.k.filter(|&k| (s.n as i64) < k) {
        return Err(Error::Invalid(format!(
            "project `{project}` ranks {k} responses per item: --n must be at least {k}"
        )));
    }
    let items = sample(s, opts)?;
    Ok(rt.block_on(async {
        let pool = labeling_ui::db::open(db).await?;
        labeling_ui::import_items(&pool, project, items).await
    })?)
}

/// The prompts of `path`, each row's `prompt` field.
fn read_prompts(path: &std::path::Path) -> Result<Vec<TextOrMessages>> {
    let bad = |line: usize, reason: &str| Error::Config {
        file: format!("{}:{line}", path.display()),
        reason: format!("field `prompt`: {reason}"),
    };
    jsonl::read_rows(path)?
        .iter()
        .map(|r| {
            let v = r
                .value
                .get("prompt")
                .cloned()
                .ok_or_else(|| bad(r.line, "missing"))?;
            serde_json::from_value::<TextOrMessages>(v).map_err(|_| {
                bad(
                    r.line,
                    "expected a string or a list of {\"role\", \"content\"} messages",
                )
            })
        })
        .collect()
}

/// Generates `n` responses for every prompt, one seeded pass over the prompts per response.
fn sample(s: &CandidateSettings, opts: &lm::LoadOptions) -> Result<Vec<labeling_ui::ImportItem>> {
    let prompts = read_prompts(required(s.prompts.as_deref(), "prompts")?)?;
    let model = required(s.model.as_deref(), "model")?;
    let load = lm::LoadOptions {
        trainable: false,
        ..opts.clone()
    };
    let p = train::load_model(model, &load)?;
    let ids = prompts
        .iter()
        .map(|x| p.tokenizer.encode_prompt(x))
        .collect::<lm::Result<Vec<_>>>()?;
    let batch = s.batch_size.max(1);
    let mut responses: Vec<Vec<String>> = vec![vec![]; prompts.len()];
    for j in 0..s.n {
        let cfg = SamplingConfig {
            max_new_tokens: s.max_new_tokens,
            temperature: s.temperature,
            top_p: s.top_p,
            seed: s.seed.wrapping_add(j as u64),
            ..Default::default()
        };
        for (chunk_i, chunk) in ids.chunks(batch).enumerate() {
            let out = generate(&p.model, &p.tokenizer, chunk, &cfg)?;
            for (k, g) in out.into_iter().enumerate() {
                responses[chunk_i * batch + k].push(g.text);
            }
        }
    }
    prompts
        .into_iter()
        .zip(responses)
        .map(|(prompt, responses)| {
            let prompt = serde_json::from_value(serde_json::to_value(prompt)?)?;
            Ok(labeling_ui::ImportItem { prompt, responses })
        })
        .collect()
}
