//! Preference pairs to token ids, as TRL 1.16's `DPOTrainer._prepare_dataset` builds them.
//!
//! - message lists: `prompt_ids = template(prompt, add_generation_prompt=True)`, and each side is
//!   `template(prompt + side)`; the completion starts where the prompt ids and the full ids first
//!   differ (`common_prefix_length`). The template closes the turn, so no EOS is added.
//! - strings: the EOS token text is appended to each side unless it already ends with it, then
//!   `prompt_ids = tokenizer(prompt)` and each side is `tokenizer(prompt + side)`, split the same
//!   way (tokens can merge across the boundary, hence the common prefix).
//! - a message-list prompt with string completions (the goldens' `prompt_format`):
//!   `template(prompt, add_generation_prompt=True)` then `tokenize(side) + [eos]`.
use super::PrefExample;
use lm::{Error, Result, TextOrMessages, Tokenizer};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Token ids of one pair; `prompt ++ chosen` and `prompt ++ rejected` are the two sequences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefTokens {
    /// Index of the example in the slice given to [`tokenize_all`].
    pub index: usize,
    /// Line of the example in its file.
    pub line: usize,
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

impl PrefTokens {
    /// Length of the longer of the two sequences.
    pub fn max_len(&self) -> usize {
        self.prompt.len() + self.chosen.len().max(self.rejected.len())
    }
}

/// Length limits. Default: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenizeOptions {
    /// Longest allowed `prompt + completion`, in tokens. Default none.
    pub max_seq_len: Option<usize>,
    /// Drop pairs longer than `max_seq_len` instead of truncating them. Default false.
    pub drop_long: bool,
}

/// The tokenized pairs of a dataset and what the length limit did.
#[derive(Debug, Clone, Default)]
pub struct TokenizedPrefs {
    pub pairs: Vec<PrefTokens>,
    /// Pairs shortened to fit `max_seq_len`.
    pub truncated: usize,
    /// Lines of pairs dropped for being too long (`drop_long`).
    pub dropped: Vec<usize>,
}

fn common_prefix_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `(prompt_ids, chosen_ids, rejected_ids)` of one pair, without any length limit.
pub fn tokenize_pair(tok: &Tokenizer, ex: &PrefExample) -> Result<(Vec<u32>, Vec<u32>, Vec<u32>)> {
    use TextOrMessages::{Messages, Text};
    let empty = Messages(vec![]);
    let prompt = ex.prompt.as_ref().unwrap_or(match &ex.chosen {
        Text(_) => &TEXT_EMPTY,
        Messages(_) => &empty,
    });
    let tools = ex.tools.as_ref();
    let (p, c, r) = match (prompt, &ex.chosen, &ex.rejected) {
        (Messages(p), Messages(c), Messages(r)) => {
            let render = |side: &[lm::Message]| -> Result<Vec<u32>> {
                let all: Vec<lm::Message> = p.iter().chain(side).cloned().collect();
                tok.encode(&tok.apply_chat_template_tools(&all, tools, false)?, false)
            };
            let p_ids = tok.encode(&tok.apply_chat_template_tools(p, tools, true)?, false)?;
            (p_ids, render(c)?, render(r)?)
        }
        (Text(p), Text(c), Text(r)) => {
            let eos = tok.eos_token.clone().unwrap_or_default();
            let with_eos = |s: &str| {
                if s.ends_with(&eos) {
                    s.to_string()
                } else {
                    format!("{s}{eos}")
                }
            };
            let p_ids = tok.encode(p, true)?;
            let full = |s: &str| tok.encode(&format!("{p}{}", with_eos(s)), true);
            (p_ids, full(c)?, full(r)?)
        }
        (Messages(p), Text(c), Text(r)) => {
            let p_ids = tok.encode(&tok.apply_chat_template_tools(p, tools, true)?, false)?;
            let side = |s: &str| -> Result<Vec<u32>> {
                let mut ids = p_ids.clone();
                ids.extend(tok.encode(s, false)?);
                if let Some(e) = eos_id(tok).filter(|e| ids.last() != Some(e)) {
                    ids.push(e);
                }
                Ok(ids)
            };
            let (c, r) = (side(c)?, side(r)?);
            (p_ids, c, r)
        }
        _ => {
            return Err(Error::Invalid(
                "prompt, chosen and rejected mix strings and message lists".into(),
            ))
        }
    };
    let n = common_prefix_len(&p, &c).min(common_prefix_len(&p, &r));
    Ok((p[..n].to_vec(), c[n..].to_vec(), r[n..].to_vec()))
}

static TEXT_EMPTY: TextOrMessages = TextOrMessages::Text(String::new());

fn eos_id(tok: &Tokenizer) -> Option<u32> {
    tok.eos_token
        .as_deref()
        .and_then(|t| tok.inner.token_to_id(t))
        .or(tok.eos_ids.first().copied())
}

/// Fits a pair into `max`: the prompt is cut from the left (keeping at least one token so the
/// first completion token is still scored), then completions from the right.
fn truncate(t: &mut PrefTokens, max: usize) {
    let longest = t.chosen.len().max(t.rejected.len());
    let keep_prompt = max.saturating_sub(longest).max(1.min(t.prompt.len()));
    let cut = t.prompt.len().saturating_sub(keep_prompt);
    t.prompt.drain(..cut);
    let room = max.saturating_sub(t.prompt.len()).max(1);
    t.chosen.truncate(room);
    t.rejected.truncate(room);
}

/// Tokenizes every example of `path`, applying the length limit. Errors name the file and line.
pub fn tokenize_all(
    path: &Path,
    tok: &Tokenizer,
    examples: &[PrefExample],
    opts: &TokenizeOptions,
) -> Result<TokenizedPrefs> {
    let mut out = TokenizedPrefs::default();
    for (index, ex) in examples.iter().enumerate() {
        let (prompt, chosen, rejected) = tokenize_pair(tok, ex).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            line: ex.line,
            reason: format!("field `prompt`/`chosen`/`rejected`: cannot tokenize: {e}"),
        })?;
        if chosen.is_empty() || rejected.is_empty() {
            let field = if chosen.is_empty() {
                "chosen"
            } else {
                "rejected"
            };
            return Err(Error::Data {
                path: path.to_path_buf(),
                line: ex.line,
                reason: format!("field `{field}`: no completion tokens after the prompt"),
            });
        }
        let mut t = PrefTokens {
            index,
            line: ex.line,
            prompt,
            chosen,
            rejected,
        };
        match opts.max_seq_len {
            Some(max) if t.max_len() > max => {
                if opts.drop_long {
                    out.dropped.push(ex.line);
                    continue;
                }
                truncate(&mut t, max);
                out.truncated += 1;
            }
            _ => {}
        }
        out.pairs.push(t);
    }
    Ok(out)
}
