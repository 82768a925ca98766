//! The prompts file: JSONL or a JSON array of `{"prompt": str | messages}` (other fields are
//! kept for the reward command), tokenized once, left-truncated to `max_prompt_len`.
use crate::{Error, Result};
use lm::{TextOrMessages, Tokenizer};
use std::path::Path;

/// One prompt, ready to sample from.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The `prompt` field as given (passed on to `--reward-cmd`).
    pub value: serde_json::Value,
    /// The text the model sees (templated when the prompt is a message list).
    pub text: String,
    /// Token ids, at most `max_prompt_len` (the oldest tokens dropped).
    pub ids: Vec<u32>,
}

/// Reads and tokenizes every prompt; a bad row names the file, its line and the field.
/// Returns the prompts and how many were truncated.
pub fn load_prompts(path: &Path, tok: &Tokenizer, max_len: usize) -> Result<(Vec<Prompt>, usize)> {
    let rows = lm::jsonl::read_rows(path)?;
    let bad = |line, reason: String| Error::Row {
        path: path.to_path_buf(),
        line,
        reason: format!("field `prompt`: {reason}"),
    };
    let (mut out, mut truncated) = (Vec::with_capacity(rows.len()), 0);
    for r in rows {
        let value = r
            .value
            .get("prompt")
            .cloned()
            .ok_or_else(|| bad(r.line, "missing".into()))?;
        let prompt: TextOrMessages = serde_json::from_value(value.clone()).map_err(|_| {
            bad(
                r.line,
                "must be a string or a list of {role, content}".into(),
            )
        })?;
        let text = tok
            .prompt_text(&prompt)
            .map_err(|e| bad(r.line, e.to_string()))?;
        let mut ids = tok
            .encode_prompt(&prompt)
            .map_err(|e| bad(r.line, e.to_string()))?;
        if ids.is_empty() {
            return Err(bad(r.line, "encodes to no tokens".into()));
        }
        if ids.len() > max_len {
            ids.drain(..ids.len() - max_len);
            truncated += 1;
        }
        out.push(Prompt { value, text, ids });
    }
    if out.is_empty() {
        return Err(bad(0, "the file has no prompts".into()));
    }
    Ok((out, truncated))
}
