//! Export to TRL's preference format, aggregated by majority over labelers, or raw labels.
//! Ranking projects are exported by `ranking_export`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::SqlitePool;

use crate::db::{project_info, Mode};
use crate::error::Result;
use crate::import::Prompt;

/// What to do with comparisons whose vote does not prefer one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Ties {
    /// Keep a row only when `chosen` has a strict plurality over every other choice.
    #[default]
    Drop,
    /// Keep every row where one response got more votes than the other, with
    /// `"margin" = (chosen votes - rejected votes) / all votes`.
    Margin,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct ExportOptions {
    #[serde(default)]
    pub ties: Ties,
    #[serde(default)]
    pub raw: bool,
    /// Ranking projects: at most this many pairs per ranking (a seeded random subset).
    #[serde(default)]
    pub max_pairs_per_ranking: Option<usize>,
}

#[derive(Default)]
struct Votes {
    first: i64,
    second: i64,
    tie: i64,
    both_bad: i64,
}

struct Cmp {
    prompt: Prompt,
    first: String,
    second: String,
    votes: Votes,
}

/// Exports a project as JSONL; returns the text and the number of rows.
pub async fn export_jsonl(
    pool: &SqlitePool,
    project: &str,
    opts: ExportOptions,
) -> Result<(String, usize)> {
    let info = project_info(pool, project).await?;
    let out = match info.mode {
        Mode::Pairwise => pairwise_rows(pool, info.id, opts).await?,
        Mode::Ranking => crate::ranking_export::ranking_rows(pool, info.id, opts).await?,
    };
    let mut text = String::new();
    for row in &out {
        text.push_str(&serde_json::to_string(row)?);
        text.push('\n');
    }
    Ok((text, out.len()))
}

async fn pairwise_rows(
    pool: &SqlitePool,
    project_id: i64,
    opts: ExportOptions,
) -> Result<Vec<Value>> {
    let rows = sqlx::query_as!(
        LabelRow,
        r#"SELECT c.id AS "cid!", i.prompt_json, r1.body AS first, r2.body AS second,
                  l.choice, l.rationale, l.created_at, u.name AS labeler
           FROM labels l
           JOIN assignments a ON a.id = l.assignment_id
           JOIN users u ON u.id = a.user_id
           JOIN comparisons c ON c.id = a.comparison_id
           JOIN items i ON i.id = c.item_id
           JOIN responses r1 ON r1.id = c.first_id
           JOIN responses r2 ON r2.id = c.second_id
           WHERE a.project_id = ? AND l.undone_at IS NULL
           ORDER BY c.id, l.id"#,
        project_id
    )
    .fetch_all(pool)
    .await?;
    if opts.raw {
        raw_rows(&rows)
    } else {
        majority_rows(rows, opts.ties)
    }
}

/// One live label with its comparison's texts.
struct LabelRow {
    cid: i64,
    prompt_json: String,
    first: String,
    second: String,
    choice: String,
    rationale: Option<String>,
    created_at: i64,
    labeler: String,
}

fn raw_rows(rows: &[LabelRow]) -> Result<Vec<Value>> {
    rows.iter()
        .map(|r| {
            Ok(json!({
                "comparison_id": r.cid, "labeler": r.labeler,
                "prompt": serde_json::from_str::<Value>(&r.prompt_json)?,
                "first": r.first, "second": r.second, "choice": r.choice,
                "rationale": r.rationale, "created_at": r.created_at,
            }))
        })
        .collect()
}

/// Rows are ordered by comparison, so votes are tallied per comparison in one pass.
fn majority_rows(rows: Vec<LabelRow>, ties: Ties) -> Result<Vec<Value>> {
    let mut by_cmp: BTreeMap<i64, Cmp> = BTreeMap::new();
    for r in rows {
        let cmp = match by_cmp.entry(r.cid) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(Cmp {
                prompt: serde_json::from_str(&r.prompt_json)?,
                first: r.first,
                second: r.second,
                votes: Votes::default(),
            }),
        };
        let v = &mut cmp.votes;
        match r.choice.as_str() {
            "first" => v.first += 1,
            "second" => v.second += 1,
            "tie" => v.tie += 1,
            _ => v.both_bad += 1,
        }
    }
    Ok(by_cmp.values().filter_map(|c| aggregate(c, ties)).collect())
}

/// TRL conversational data wants completions as message lists when the prompt is one.
pub(crate) fn completion(prompt: &Prompt, text: &str) -> Value {
    match prompt {
        Prompt::Text(_) => json!(text),
        Prompt::Messages(_) => json!([{ "role": "assistant", "content": text }]),
    }
}

fn aggregate(c: &Cmp, ties: Ties) -> Option<Value> {
    let v = &c.votes;
    let total = v.first + v.second + v.tie + v.both_bad;
    let first_wins = v.first > v.second;
    let (chosen, rejected, vc, vr) = if first_wins {
        (&c.first, &c.second, v.first, v.second)
    } else {
        (&c.second, &c.first, v.second, v.first)
    };
    let keep = match ties {
        Ties::Drop => vc > vr && vc > v.tie && vc > v.both_bad,
        Ties::Margin => vc > vr,
    };
    if !keep || total == 0 {
        return None;
    }
    let mut row = json!({
        "prompt": c.prompt,
        "chosen": completion(&c.prompt, chosen),
        "rejected": completion(&c.prompt, rejected),
        "votes": { "chosen": vc, "rejected": vr, "tie": v.tie, "both_bad": v.both_bad },
        "agreement": vc as f64 / total as f64,
    });
    if ties == Ties::Margin {
        row["margin"] = json!((vc - vr) as f64 / total as f64);
    }
    Some(row)
}
