//! Summaries behind the report: per model (reward, KL, length, refusals, each with a 95%
//! interval) and per group of rephrasings (each model's behaviour on each variant).
use crate::cost::SamplingCost;
use crate::error::{Error, Result};
use crate::provenance::{self, Provenance};
use crate::run::{write_results, CompareSettings, ModelSpec, Sample};
use crate::stats::{mean_ci, wilson, Estimate};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub spec: String,
    pub samples: usize,
    pub reward: Option<Estimate>,
    /// Mean over samples of Σ (log p_model - log p_base) over completion tokens.
    pub kl: Option<Estimate>,
    pub completion_tokens: Option<Estimate>,
    /// Share of refusal-like openings, with a Wilson interval.
    pub refusal: Option<Estimate>,
    /// Share of completions that ended on EOS rather than at max_new_tokens.
    pub finished: f64,
    /// What sampling this model cost (absent when the report is rebuilt from results).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<SamplingCost>,
    /// How it was trained, from its run folder's record (none for a model Rudder did not train).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub made: Option<Provenance>,
}

/// One model on one variant of a group (means over its samples).
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub reward: Option<f64>,
    pub completion_tokens: f64,
    pub refusals: usize,
    pub n: usize,
}

/// How each model's behaviour moves across a group's rephrasings.
#[derive(Debug, Clone, Serialize)]
pub struct GroupShift {
    pub group: String,
    pub category: String,
    pub variants: Vec<String>,
    /// `cells[model][variant]`.
    pub cells: Vec<Vec<Cell>>,
    /// Per model: max - min over variants of the mean reward (None without rewards).
    pub reward_shift: Vec<Option<f64>>,
    /// Per model: max - min over variants of the refusal share.
    pub refusal_shift: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub prompts: String,
    pub settings: CompareSettings,
    pub models: Vec<ModelSummary>,
    pub groups: Vec<GroupShift>,
    /// How the reward model was trained, when a Rudder stage trained it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reward_made: Option<Provenance>,
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

impl Report {
    pub fn build(
        models: &[ModelSpec],
        samples: Vec<Sample>,
        settings: &CompareSettings,
        prompts: &str,
    ) -> Report {
        let models = models
            .iter()
            .map(|m| summarise(m, &samples))
            .collect::<Vec<_>>();
        let groups = group_shifts(&models, &samples);
        Report {
            prompts: prompts.into(),
            settings: settings.clone(),
            models,
            groups,
            reward_made: settings.reward_model.as_deref().and_then(provenance::of),
            samples,
        }
    }

    /// Attaches each model's sampling cost (matched by name).
    pub fn with_costs(mut self, costs: Vec<SamplingCost>) -> Report {
        for c in costs {
            if let Some(m) = self.models.iter_mut().find(|m| m.name == c.model) {
                m.cost = Some(c);
            }
        }
        self
    }

    pub fn has_rewards(&self) -> bool {
        self.samples.iter().any(|s| s.reward.is_some())
    }
}

fn summarise(m: &ModelSpec, samples: &[Sample]) -> ModelSummary {
    let mine: Vec<&Sample> = samples.iter().filter(|s| s.model == m.name).collect();
    let col = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<f64> {
        mine.iter().filter_map(|s| f(s)).collect()
    };
    let refusals = mine.iter().filter(|s| s.refusal).count();
    let finished = mine.iter().filter(|s| s.finished).count();
    ModelSummary {
        name: m.name.clone(),
        spec: m.spec.clone(),
        samples: mine.len(),
        reward: mean_ci(&col(&|s| s.reward)),
        kl: mean_ci(&col(&|s| Some(s.kl))),
        completion_tokens: mean_ci(&col(&|s| Some(s.completion_tokens as f64))),
        refusal: wilson(refusals, mine.len()),
        finished: finished as f64 / mine.len().max(1) as f64,
        cost: None,
        made: provenance::of(&m.spec),
    }
}

/// Groups and variants in first-seen order.
fn group_shifts(models: &[ModelSummary], samples: &[Sample]) -> Vec<GroupShift> {
    let mut order: Vec<(String, String, Vec<String>)> = vec![];
    for s in samples {
        match order.iter_mut().find(|(g, _, _)| *g == s.group) {
            Some((_, _, vs)) if !vs.contains(&s.variant) => vs.push(s.variant.clone()),
            Some(_) => {}
            None => order.push((s.group.clone(), s.category.clone(), vec![s.variant.clone()])),
        }
    }
    order
        .into_iter()
        .map(|(group, category, variants)| {
            let cells: Vec<Vec<Cell>> = models
                .iter()
                .map(|m| {
                    variants
                        .iter()
                        .map(|v| cell(samples, &m.name, &group, v))
                        .collect()
                })
                .collect();
            let spread = |xs: Vec<f64>| {
                xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                    - xs.iter().cloned().fold(f64::INFINITY, f64::min)
            };
            let reward_shift = cells
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|c| c.reward)
                        .collect::<Option<Vec<_>>>()
                        .map(spread)
                })
                .collect();
            let refusal_shift = cells
                .iter()
                .map(|row| {
                    spread(
                        row.iter()
                            .map(|c| c.refusals as f64 / c.n.max(1) as f64)
                            .collect(),
                    )
                })
                .collect();
            GroupShift {
                group,
                category,
                variants,
                cells,
                reward_shift,
                refusal_shift,
            }
        })
        .collect()
}

fn cell(samples: &[Sample], model: &str, group: &str, variant: &str) -> Cell {
    let xs: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.model == model && s.group == group && s.variant == variant)
        .collect();
    let n = xs.len();
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Cell {
        reward: xs
            .iter()
            .map(|s| s.reward)
            .collect::<Option<Vec<_>>>()
            .filter(|v| !v.is_empty())
            .map(mean),
        completion_tokens: mean(xs.iter().map(|s| s.completion_tokens as f64).collect()),
        refusals: xs.iter().filter(|s| s.refusal).count(),
        n,
    }
}

/// Writes `results.jsonl`, `summary.json` and the self-contained `index.html` into `out`.
pub fn write_report(out: &Path, report: &Report) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_results(&out.join("results.jsonl"), &report.samples)?;
    let summary = out.join("summary.json");
    std::fs::write(&summary, serde_json::to_string_pretty(report)?)
        .map_err(|e| Error::io(&summary, e))?;
    let index = out.join("index.html");
    std::fs::write(&index, crate::html::render(report)).map_err(|e| Error::io(&index, e))
}

/// What `rudder compare` (and the pipeline's `[compare]` stage) did: the report written into
/// `out`, and one line per model plus a closing line for the terminal.
pub struct Compared {
    pub report: Report,
    pub lines: Vec<String>,
}

/// Samples every model on the prompts, scores, and writes the report (with each model's
/// sampling cost) into `out`.
pub fn compare_models(
    models: &[ModelSpec],
    settings: &CompareSettings,
    out: &Path,
    opts: &lm::LoadOptions,
    cost: &cost::CostSettings,
) -> Result<Compared> {
    settings.validate()?;
    crate::run::check_inputs(models, settings)?;
    let prompts = crate::prompts::load(settings.prompts.as_deref())?;
    let source = settings
        .prompts
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| crate::prompts::DEFAULT_SOURCE.into());
    let sampled = crate::run::run_models(models, &prompts, settings, opts, cost)?;
    let report =
        Report::build(models, sampled.samples, settings, &source).with_costs(sampled.costs);
    write_report(out, &report)?;
    let mut lines = report
        .models
        .iter()
        .flat_map(model_lines)
        .collect::<Vec<_>>();
    lines.push(format!(
        "compare: {} prompts x {} models; wrote {}",
        prompts.len(),
        models.len(),
        out.join("index.html").display()
    ));
    Ok(Compared { report, lines })
}

/// `name: reward r [lo, hi], KL to base …, tokens …`, and its sampling cost when metered.
fn model_lines(m: &ModelSummary) -> Vec<String> {
    let f = |e: &Option<Estimate>| {
        e.map(|e| format!("{:.3} [{:.3}, {:.3}]", e.value, e.lo, e.hi))
            .unwrap_or("-".into())
    };
    let mut lines = vec![format!(
        "{:>12}: reward {}, KL to base {}, tokens {}",
        m.name,
        f(&m.reward),
        f(&m.kl),
        f(&m.completion_tokens)
    )];
    if let Some(made) = &m.made {
        lines.push(format!("{:>12}  {}", "", made.line));
    }
    if let Some(c) = &m.cost {
        let line = cost::cost_line(&c.cost);
        lines.push(format!(
            "{:>12}  sampling {} new tokens: {line}",
            "", c.generated_tokens
        ));
    }
    lines
}

/// `rudder label winrate`'s table: one row per model and group (and overall), with the win
/// and tie rates and their Wilson 95% intervals.
pub fn win_rate_table(rows: &[crate::blind::WinRate]) -> String {
    let label = |r: &crate::blind::WinRate| {
        let g = r.group.as_deref().unwrap_or("all groups");
        format!("{} vs {} / {g}", r.model, r.base)
    };
    let w = rows
        .iter()
        .map(|r| label(r).len())
        .max()
        .unwrap_or(0)
        .max(20);
    let e = |e: &Option<Estimate>| {
        e.map(|e| format!("{:.3} [{:.3}, {:.3}]", e.value, e.lo, e.hi))
            .unwrap_or("-".into())
    };
    let mut out = format!(
        "{:<w$} {:>5} {:>5} {:>5} {:>5}  {:<24} {:<24}",
        "model vs base / group",
        "n",
        "win",
        "tie",
        "loss",
        "win rate [Wilson 95%]",
        "tie rate [Wilson 95%]"
    );
    for r in rows {
        let t = &r.tally;
        out += &format!(
            "\n{:<w$} {:>5} {:>5} {:>5} {:>5}  {:<24} {:<24}",
            label(r),
            t.n(),
            t.wins,
            t.ties,
            t.losses,
            e(&r.win_rate),
            e(&r.tie_rate)
        );
    }
    out
}
