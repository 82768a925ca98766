//! Preference pairs (prompt, chosen, rejected) for the reward-model and DPO stages.
//!
//! Accepted row formats (detected per row; unknown extra fields are ignored):
//! - TRL explicit prompt: `{"prompt", "chosen", "rejected"}`, each a string or a message list;
//! - TRL implicit prompt: `{"chosen", "rejected"}`; the shared prefix becomes the prompt exactly as
//!   TRL's `extract_prompt` computes it (per message for lists, per character for strings);
//! - the labeling export: the TRL fields plus `votes` (`{"chosen": 2, "rejected": 1, "tie": 0}`),
//!   `agreement`, optional `margin` and `"tie": true`;
//! - ranking rows (`rudder label export --raw` of a ranking project): `{"prompt", "responses",
//!   "tiers", "unacceptable", "ranking_id"}`, expanded into one pair per (better, worse) response,
//!   grouped by ranking (see `prefs_ranking.rs`);
//! - LLaMA-Factory pairwise rows: `{"conversations": [{"from", "value"}..], "chosen": {"from",
//!   "value"}, "rejected": {..}}` with optional `"system"`; `human`/`gpt`/`system` become
//!   `user`/`assistant`/`system`.
//!
//! Any row may carry `"margin"` (a number) and `"group"` (a string or number).
//! [`tokenize_pair`] turns an example into token ids the way TRL 1.16's DPOTrainer does.
// `lm::Error` is the workspace's shared error (144 bytes); shrinking it is the lm crate's call.
#![allow(clippy::result_large_err)]
use lm::jsonl::Row;
use lm::{Error, Message, Result, TextOrMessages};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

mod ranking;
mod tokens;
pub use tokens::{tokenize_all, tokenize_pair, PrefTokens, TokenizeOptions, TokenizedPrefs};

/// Annotator votes of the labeling export; missing counts are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Votes {
    pub chosen: f64,
    pub rejected: f64,
    pub tie: f64,
}

impl Votes {
    /// Share of votes for `chosen`, a tie counting half: `(chosen + tie/2) / total`.
    pub fn chosen_share(&self) -> Option<f64> {
        let total = self.chosen + self.rejected + self.tie;
        (total > 0.0).then(|| (self.chosen + 0.5 * self.tie) / total)
    }
}

/// One preference pair and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefExample {
    /// 1-based line in the file (element index for a JSON array).
    pub line: usize,
    /// `None` when the row has no prompt and chosen/rejected share no prefix.
    pub prompt: Option<TextOrMessages>,
    pub chosen: TextOrMessages,
    pub rejected: TextOrMessages,
    /// Optional reward margin (TRL's `margin` column).
    pub margin: Option<f64>,
    /// Labeling-export votes, if present.
    pub votes: Option<Votes>,
    /// Labeling-export inter-annotator agreement in `[0, 1]`, if present.
    pub agreement: Option<f64>,
    /// The annotators judged both completions equally good (`"tie": true`).
    pub tie: bool,
    /// Optional group id (e.g. several pairs ranked for one prompt).
    pub group: Option<String>,
    /// Tool schemas for the chat template (TRL's `tools` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Value>,
}

impl PrefExample {
    /// Probability that `chosen` is preferred, as a soft label: 0.5 for a tie, 1 otherwise.
    pub fn chosen_prob(&self) -> f64 {
        if self.tie {
            0.5
        } else {
            1.0
        }
    }
}

/// How strictly to read a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadOptions {
    /// Skip (and count) rows that fail to parse instead of stopping at the first. Default false.
    #[serde(default)]
    pub skip_bad_rows: bool,
}

/// The examples of a file plus the rows that were skipped, with their reasons.
#[derive(Debug, Clone, Default)]
pub struct PrefData {
    pub examples: Vec<PrefExample>,
    /// `(line, reason)` of every skipped row (only with `skip_bad_rows`).
    pub skipped: Vec<(usize, String)>,
}

pub(crate) fn bad(path: &Path, line: usize, field: &str, reason: impl std::fmt::Display) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        line,
        reason: format!("field `{field}`: {reason}"),
    }
}

/// Reads a JSONL file or JSON array of preference rows.
pub fn read_prefs(path: &Path, opts: &ReadOptions) -> Result<PrefData> {
    let mut out = PrefData::default();
    for row in read_rows_lenient(path, opts, &mut out.skipped)? {
        if let Some(obj) = row.value.as_object().filter(|o| ranking::is_ranking(o)) {
            match ranking::ranking_examples(path, row.line, obj) {
                Ok(pairs) => out.examples.extend(pairs),
                Err(e) if opts.skip_bad_rows => out.skipped.push((row.line, e.to_string())),
                Err(e) => return Err(e),
            }
            continue;
        }
        match parse_pref_row(path, &row) {
            Ok(ex) => out.examples.push(ex),
            Err(e) if opts.skip_bad_rows => out.skipped.push((row.line, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Like `lm::jsonl::read_rows`, but with `skip_bad_rows` an invalid JSONL line is skipped too.
pub(crate) fn read_rows_lenient(
    path: &Path,
    opts: &ReadOptions,
    skipped: &mut Vec<(usize, String)>,
) -> Result<Vec<Row>> {
    if !opts.skip_bad_rows {
        return lm::jsonl::read_rows(path);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if text.trim_start().starts_with('[') {
        return lm::jsonl::read_rows(path);
    }
    let mut rows = vec![];
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str(line) {
            Ok(value) => rows.push(Row { line: i + 1, value }),
            Err(e) => skipped.push((i + 1, lm::jsonl::invalid_json(&e))),
        }
    }
    Ok(rows)
}

/// Parses one row in any of the accepted formats.
pub fn parse_pref_row(path: &Path, row: &Row) -> Result<PrefExample> {
    let line = row.line;
    let obj = row
        .value
        .as_object()
        .ok_or_else(|| bad(path, line, "<row>", "expected a JSON object"))?;
    let (prompt, chosen, rejected) = if obj.contains_key("conversations") {
        llama_factory_parts(path, line, obj)?
    } else {
        trl_parts(path, line, obj)?
    };
    if chosen == rejected {
        return Err(bad(path, line, "rejected", "identical to `chosen`"));
    }
    if matches!(
        (&prompt, &chosen),
        (Some(TextOrMessages::Text(_)), TextOrMessages::Messages(_))
    ) {
        return Err(bad(
            path,
            line,
            "chosen",
            "a message list after a text prompt; use messages for both",
        ));
    }
    Ok(PrefExample {
        line,
        prompt,
        chosen,
        rejected,
        margin: opt_num(path, line, obj, "margin")?,
        votes: opt_votes(path, line, obj)?,
        agreement: opt_num(path, line, obj, "agreement")?,
        tie: opt_bool(path, line, obj, "tie")?,
        group: opt_group(path, line, obj)?,
        tools: crate::sft::tools(obj).map_err(|reason| Error::Data {
            path: path.to_path_buf(),
            line,
            reason,
        })?,
    })
}

type Parts = (Option<TextOrMessages>, TextOrMessages, TextOrMessages);
type Object = serde_json::Map<String, Value>;

pub(crate) fn text_or_messages(
    path: &Path,
    line: usize,
    obj: &Object,
    field: &str,
) -> Result<TextOrMessages> {
    let v = obj
        .get(field)
        .ok_or_else(|| bad(path, line, field, "missing"))?;
    serde_json::from_value(v.clone()).map_err(|_| {
        bad(
            path,
            line,
            field,
            "expected a string or a list of {\"role\", \"content\"} messages",
        )
    })
}

fn trl_parts(path: &Path, line: usize, obj: &Object) -> Result<Parts> {
    let chosen = text_or_messages(path, line, obj, "chosen")?;
    let rejected = text_or_messages(path, line, obj, "rejected")?;
    if obj.contains_key("prompt") {
        let prompt = text_or_messages(path, line, obj, "prompt")?;
        return Ok((Some(prompt), chosen, rejected));
    }
    extract_prompt(chosen, rejected).map_err(|reason| bad(path, line, "rejected", reason))
}

/// TRL 1.16 `extract_prompt`: the longest common prefix (messages, or characters of strings) is
/// the prompt; for strings a space just before the split goes to the completions. As in TRL, when
/// one side is a prefix of the other the split falls one element before the shorter one's end.
pub fn extract_prompt(
    chosen: TextOrMessages,
    rejected: TextOrMessages,
) -> std::result::Result<Parts, String> {
    fn split_at<T: PartialEq>(c: &[T], r: &[T], is_space: impl Fn(&T) -> bool) -> Option<usize> {
        let n = c.len().min(r.len());
        let mut idx = (0..n).find(|&i| c[i] != r[i]).unwrap_or(n.checked_sub(1)?);
        if idx > 0 && idx < n && c[idx] != r[idx] && is_space(&c[idx - 1]) {
            idx -= 1;
        }
        Some(idx)
    }
    match (chosen, rejected) {
        (TextOrMessages::Messages(c), TextOrMessages::Messages(r)) => {
            let idx = split_at(&c, &r, |_| false).ok_or("empty message list")?;
            let prompt = (idx > 0).then(|| TextOrMessages::Messages(c[..idx].to_vec()));
            Ok((
                prompt,
                TextOrMessages::Messages(c[idx..].to_vec()),
                TextOrMessages::Messages(r[idx..].to_vec()),
            ))
        }
        (TextOrMessages::Text(c), TextOrMessages::Text(r)) => {
            let (cc, rc): (Vec<char>, Vec<char>) = (c.chars().collect(), r.chars().collect());
            let idx = split_at(&cc, &rc, |ch| *ch == ' ').ok_or("empty text")?;
            let cut = |s: &[char]| -> String { s.iter().collect() };
            let prompt = (idx > 0).then(|| TextOrMessages::Text(cut(&cc[..idx])));
            Ok((
                prompt,
                TextOrMessages::Text(cut(&cc[idx..])),
                TextOrMessages::Text(cut(&rc[idx..])),
            ))
        }
        _ => Err("`chosen` and `rejected` must both be strings or both message lists".into()),
    }
}

fn lf_message(path: &Path, line: usize, field: &str, v: &Value) -> Result<Message> {
    let get = |k: &str| v.get(k).and_then(Value::as_str);
    let (Some(from), Some(value)) = (get("from"), get("value")) else {
        return Err(bad(
            path,
            line,
            field,
            "expected {\"from\": .., \"value\": ..} with strings",
        ));
    };
    let role = crate::sft::sharegpt_role(from)
        .ok_or_else(|| bad(path, line, field, format!("unknown role `{from}`")))?;
    Ok(Message::new(role, value))
}

fn llama_factory_parts(path: &Path, line: usize, obj: &Object) -> Result<Parts> {
    let turns = obj["conversations"]
        .as_array()
        .ok_or_else(|| bad(path, line, "conversations", "expected a list"))?;
    let mut prompt = vec![];
    if let Some(sys) = obj
        .get("system")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        prompt.push(Message::new("system", sys));
    }
    for (i, t) in turns.iter().enumerate() {
        prompt.push(lf_message(path, line, &format!("conversations[{i}]"), t)?);
    }
    if prompt.last().is_none_or(|m| m.role != "user") {
        return Err(bad(
            path,
            line,
            "conversations",
            "must end with a `human` turn",
        ));
    }
    let side = |field: &str| -> Result<TextOrMessages> {
        let v = obj
            .get(field)
            .ok_or_else(|| bad(path, line, field, "missing"))?;
        Ok(TextOrMessages::Messages(vec![lf_message(
            path, line, field, v,
        )?]))
    };
    let (chosen, rejected) = (side("chosen")?, side("rejected")?);
    Ok((Some(TextOrMessages::Messages(prompt)), chosen, rejected))
}

fn opt_num(path: &Path, line: usize, obj: &Object, field: &str) -> Result<Option<f64>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| {
                bad(
                    path,
                    line,
                    field,
                    format!("expected a finite number, got {v}"),
                )
            }),
    }
}

fn opt_bool(path: &Path, line: usize, obj: &Object, field: &str) -> Result<bool> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(bad(
            path,
            line,
            field,
            format!("expected true or false, got {v}"),
        )),
    }
}

fn opt_votes(path: &Path, line: usize, obj: &Object) -> Result<Option<Votes>> {
    match obj.get("votes") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|_| {
            bad(
                path,
                line,
                "votes",
                "expected {\"chosen\": n, \"rejected\": n, \"tie\": n}",
            )
        }),
    }
}

fn opt_group(path: &Path, line: usize, obj: &Object) -> Result<Option<String>> {
    match obj.get("group") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(v) => Err(bad(
            path,
            line,
            "group",
            format!("expected a string or number, got {v}"),
        )),
    }
}

#[cfg(test)]
mod tests;
