//! Parsed rows to token ids and loss masks, truncation, and the data statistics the log shows.
use crate::{Error, Result};
use data::sft::{SftExample, SftFile};
use lm::{Message, Tokenizer};
use std::path::Path;

/// One tokenized example. `loss[j]` says whether token `j` is a training target (it is
/// predicted from tokens `..j`); `loss[0]` is never used since nothing predicts token 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub ids: Vec<u32>,
    pub loss: Vec<bool>,
}

impl Sample {
    /// Tokens the loss covers (targets at positions `1..`).
    pub fn loss_tokens(&self) -> usize {
        self.loss.iter().skip(1).filter(|&&m| m).count()
    }
}

/// What preparing a file did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DataStats {
    pub rows: usize,
    /// Bad rows left out (`skip_bad_rows`).
    pub skipped: usize,
    /// Rows cut to `max_seq_len`.
    pub truncated: usize,
    /// Truncated rows left out because the cut removed every token they train on (a long
    /// prompt or tool list): they would only dilute a batch (TRL keeps them).
    pub dropped: usize,
    pub tokens: usize,
    pub loss_tokens: usize,
}

/// Tokenizes one example the way TRL's SFTTrainer does. Text: the tokenizer's specials, EOS
/// appended, loss everywhere. Prompt/completion: [`Tokenizer::encode_pair`] (EOS appended
/// unless the completion has one), loss on the completion. Messages: the chat template renders
/// the whole conversation once; assistant turns are found by rendering each prefix, and the
/// tokens inside them (by byte offsets) carry the loss.
pub fn encode(tok: &Tokenizer, ex: &SftExample, loss_on_all: bool) -> lm::Result<Sample> {
    let mut s = match ex {
        SftExample::Text(t) => {
            let mut ids = tok.encode(t, true)?;
            push_eos(tok, &mut ids);
            let loss = vec![true; ids.len()];
            Sample { ids, loss }
        }
        SftExample::PromptCompletion { prompt, completion } => {
            let pc = tok.encode_pair(prompt, completion, true)?;
            let mut loss = vec![false; pc.prompt.len()];
            loss.resize(pc.prompt.len() + pc.completion.len(), true);
            Sample {
                ids: pc.full(),
                loss,
            }
        }
        SftExample::Messages { messages, tools } => encode_messages(tok, messages, tools.as_ref())?,
    };
    if loss_on_all {
        s.loss.iter_mut().for_each(|m| *m = true);
    }
    Ok(s)
}

fn push_eos(tok: &Tokenizer, ids: &mut Vec<u32>) {
    if ids.last().is_some_and(|t| tok.eos_ids.contains(t)) {
        return;
    }
    let eos = tok
        .eos_token
        .as_deref()
        .and_then(|t| tok.inner.token_to_id(t));
    if let Some(e) = eos.or(tok.eos_ids.first().copied()) {
        ids.push(e);
    }
}

/// Byte spans `[start, end)` of the assistant turns in the rendered conversation.
fn assistant_spans(
    tok: &Tokenizer,
    msgs: &[Message],
    tools: Option<&serde_json::Value>,
    full: &str,
) -> lm::Result<Vec<(usize, usize)>> {
    let mut spans = vec![];
    for (i, m) in msgs
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == "assistant")
    {
        let before = tok.apply_chat_template_tools(&msgs[..i], tools, true)?;
        let upto = tok.apply_chat_template_tools(&msgs[..=i], tools, false)?;
        if !(upto.starts_with(&before) && full.starts_with(&upto)) {
            return Err(lm::Error::Template(format!(
                "rendering messages[..{i}] is not a prefix of the whole conversation, so the \
                 assistant turn `{}` cannot be located (use --loss-on-all or prompt/completion rows)",
                m.content.chars().take(40).collect::<String>()
            )));
        }
        spans.push((before.len(), upto.len()));
    }
    Ok(spans)
}

fn encode_messages(
    tok: &Tokenizer,
    msgs: &[Message],
    tools: Option<&serde_json::Value>,
) -> lm::Result<Sample> {
    // A template with `{% generation %}` blocks says itself what is assistant text (as for
    // transformers' `return_assistant_tokens_mask`); otherwise each turn is found by rendering
    // the conversation up to it.
    let (full, spans) = match tok.render_generation_spans(msgs, tools)? {
        Some(marked) => marked,
        None => {
            let full = tok.apply_chat_template_tools(msgs, tools, false)?;
            let spans = assistant_spans(tok, msgs, tools, &full)?;
            (full, spans)
        }
    };
    // Templated text carries its own special tokens, as in transformers.
    let enc = tok
        .inner
        .encode(full.as_str(), false)
        .map_err(|e| lm::Error::Tokenizer(e.to_string()))?;
    let mut ids = enc.get_ids().to_vec();
    // A token is trained on when its byte range overlaps an assistant span (transformers'
    // `return_assistant_tokens_mask` does the same with char_to_token).
    let mut loss: Vec<bool> = enc
        .get_offsets()
        .iter()
        .map(|&(s, e)| e > s && spans.iter().any(|&(a, b)| s < b && e > a))
        .collect();
    let ends_with_assistant = msgs.last().is_some_and(|m| m.role == "assistant");
    if ends_with_assistant && !ids.iter().any(|t| tok.eos_ids.contains(t)) {
        push_eos(tok, &mut ids);
        loss.resize(ids.len(), true);
    }
    Ok(Sample { ids, loss })
}

/// Tokenizes a parsed file: truncates to `max_seq_len`, and turns a row that cannot be
/// tokenized (e.g. the template fails) into an error naming file and line, or with `skip_bad`
/// into one more skipped row. Returns the samples and their statistics.
pub fn prepare(
    tok: &Tokenizer,
    path: &Path,
    file: SftFile,
    max_seq_len: usize,
    loss_on_all: bool,
    skip_bad: bool,
) -> Result<(Vec<Sample>, DataStats)> {
    let mut stats = DataStats {
        skipped: file.skipped.len(),
        ..Default::default()
    };
    for e in file.skipped.iter().take(5) {
        tracing::warn!("skipped bad row: {e}");
    }
    let mut out = Vec::with_capacity(file.rows.len());
    for row in file.rows {
        let encoded = encode(tok, &row.example, loss_on_all).and_then(|s| match s.loss_tokens() {
            0 => Err(lm::Error::Invalid("no tokens to train on".into())),
            _ => Ok(s),
        });
        let mut s = match encoded {
            Ok(s) => s,
            Err(e) if skip_bad => {
                tracing::warn!("skipped bad row: {}", data_err(path, row.line, e));
                stats.skipped += 1;
                continue;
            }
            Err(e) => return Err(data_err(path, row.line, e).into()),
        };
        if s.ids.len() > max_seq_len {
            s.ids.truncate(max_seq_len);
            s.loss.truncate(max_seq_len);
            stats.truncated += 1;
            if s.loss_tokens() == 0 {
                stats.dropped += 1;
                continue;
            }
        }
        stats.tokens += s.ids.len();
        stats.loss_tokens += s.loss_tokens();
        out.push(s);
    }
    stats.rows = out.len();
    if out.is_empty() {
        return Err(Error::File {
            path: path.to_path_buf(),
            reason: format!("no usable rows ({} skipped as bad)", stats.skipped),
        });
    }
    Ok((out, stats))
}

fn data_err(path: &Path, line: usize, reason: impl ToString) -> lm::Error {
    lm::Error::Data {
        path: path.to_path_buf(),
        line,
        reason: reason.to_string(),
    }
}
