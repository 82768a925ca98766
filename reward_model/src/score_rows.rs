//! `rudder reward score`: adds `"reward"` to rows `{"prompt", "completion"}`.
use crate::model::RewardModel;
use crate::{Error, Result};
use data::prefs::{tokenize_pair, PrefExample};
use lm::jsonl::{read_rows, Row};
use lm::TextOrMessages;
use std::path::Path;

fn field(path: &Path, row: &Row, name: &str) -> Result<TextOrMessages> {
    let v = row.value.get(name).ok_or_else(|| Error::Row {
        path: path.to_path_buf(),
        line: row.line,
        reason: format!("field `{name}`: missing"),
    })?;
    serde_json::from_value(v.clone()).map_err(|_| Error::Row {
        path: path.to_path_buf(),
        line: row.line,
        reason: format!(
            "field `{name}`: expected a string or a list of {{\"role\", \"content\"}} messages"
        ),
    })
}

/// Token ids of one row, built exactly as training builds a pair's sequence
/// (`data::prefs::tokenize_pair`): the prompt (templated when it is a message list) followed by
/// the completion, closed with EOS when the template does not close it.
pub fn row_ids(model: &RewardModel, path: &Path, row: &Row) -> Result<Vec<u32>> {
    let prompt = field(path, row, "prompt")?;
    let completion = field(path, row, "completion")?;
    let ex = PrefExample {
        line: row.line,
        prompt: Some(prompt),
        chosen: completion.clone(),
        rejected: completion,
        margin: None,
        votes: None,
        agreement: None,
        tie: false,
        group: None,
        tools: None,
    };
    let (p, c, _) = tokenize_pair(&model.tokenizer, &ex).map_err(|e| Error::Row {
        path: path.to_path_buf(),
        line: row.line,
        reason: format!("field `prompt`/`completion`: {e}"),
    })?;
    Ok([p, c].concat())
}

/// Longest row kept: longer rows lose prompt tokens from the left, so the completion and the
/// reward token stay; `None` keeps everything.
fn fit(mut ids: Vec<u32>, max_len: Option<usize>) -> (Vec<u32>, bool) {
    match max_len {
        Some(m) if ids.len() > m => {
            ids.drain(..ids.len() - m);
            (ids, true)
        }
        _ => (ids, false),
    }
}

/// Scores every row of `input` and returns the rows with `"reward"` added, plus how many were
/// truncated to `max_len`. Nothing is written when any row is bad.
pub fn score_file(
    model: &RewardModel,
    input: &Path,
    max_len: Option<usize>,
) -> Result<(Vec<serde_json::Value>, usize)> {
    let rows = read_rows(input)?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut truncated = 0;
    for row in &rows {
        if !row.value.is_object() {
            return Err(Error::Row {
                path: input.to_path_buf(),
                line: row.line,
                reason: "expected a JSON object".into(),
            });
        }
        let (r, cut) = fit(row_ids(model, input, row)?, max_len);
        truncated += usize::from(cut);
        ids.push(r);
    }
    let rewards = model.score(&ids)?;
    let out = rows
        .into_iter()
        .zip(rewards)
        .map(|(mut row, r)| {
            row.value["reward"] = serde_json::json!(r);
            row.value
        })
        .collect();
    Ok((out, truncated))
}
