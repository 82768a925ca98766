//! Unpaired preference rows (prompt, completion, label) for KTO, in TRL 1.16's formats.
//!
//! - TRL's unpaired preference rows: `{"prompt", "completion", "label": true|false}`, prompt
//!   and completion each a string or a message list (`"tools"` as in the other readers);
//! - any paired preference file `data::prefs` reads: each pair becomes one desirable row (its
//!   chosen completion) and one undesirable row (its rejected one), ordered as TRL's
//!   `unpair_preference_dataset` orders them (per block of 1000 pairs, the chosen rows, then the
//!   rejected rows). Tied pairs (`"tie": true`) say neither side is better and are left out.
//!
//! The file's first row decides the format, as in TRL.
//! [`tokenize_unpaired`] turns an example into token ids as TRL's `KTOTrainer` does.
#![allow(clippy::result_large_err)]
use crate::prefs::{self, bad, PrefExample, ReadOptions};
use lm::{Result, TextOrMessages, Tokenizer};
use serde_json::Value;
use std::path::Path;

/// `datasets.map(batched=True)`'s default batch size, the block TRL unpairs pairs in.
pub const UNPAIR_BLOCK: usize = 1000;

/// One unpaired example and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct UnpairedExample {
    /// 1-based line in the file (element index for a JSON array).
    pub line: usize,
    pub prompt: TextOrMessages,
    pub completion: TextOrMessages,
    /// Desirable (`true`) or undesirable.
    pub label: bool,
    /// Tool schemas for the chat template.
    pub tools: Option<Value>,
}

/// The examples of a file, the rows that were skipped with their reasons, and the ties left out.
#[derive(Debug, Clone, Default)]
pub struct UnpairedData {
    pub examples: Vec<UnpairedExample>,
    pub skipped: Vec<(usize, String)>,
    /// Tied pairs of a paired file, left out.
    pub ties: usize,
    /// Whether the file held pairs (each split into two rows).
    pub paired: bool,
}

/// Reads a JSONL file or JSON array of unpaired rows, or of pairs to split.
pub fn read_unpaired(path: &Path, opts: &ReadOptions) -> Result<UnpairedData> {
    let mut out = UnpairedData::default();
    let rows = prefs::read_rows_lenient(path, opts, &mut out.skipped)?;
    let paired = rows
        .first()
        .and_then(|r| r.value.as_object())
        .is_some_and(|o| !o.contains_key("completion"));
    if paired {
        return read_paired(path, opts);
    }
    for row in &rows {
        match parse_unpaired_row(path, row) {
            Ok(ex) => out.examples.push(ex),
            Err(e) if opts.skip_bad_rows => out.skipped.push((row.line, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn read_paired(path: &Path, opts: &ReadOptions) -> Result<UnpairedData> {
    let file = prefs::read_prefs(path, opts)?;
    let (ties, pairs): (Vec<_>, Vec<_>) = file.examples.into_iter().partition(|e| e.tie);
    Ok(UnpairedData {
        examples: unpair(&pairs),
        skipped: file.skipped,
        ties: ties.len(),
        paired: true,
    })
}

/// TRL's `unpair_preference_dataset`: per block of [`UNPAIR_BLOCK`] pairs, every chosen row
/// (label true), then every rejected row (label false).
pub fn unpair(pairs: &[PrefExample]) -> Vec<UnpairedExample> {
    let row = |p: &PrefExample, completion: &TextOrMessages, label: bool| UnpairedExample {
        line: p.line,
        prompt: p.prompt.clone().unwrap_or_else(|| empty_like(completion)),
        completion: completion.clone(),
        label,
        tools: p.tools.clone(),
    };
    let mut out = Vec::with_capacity(2 * pairs.len());
    for block in pairs.chunks(UNPAIR_BLOCK) {
        out.extend(block.iter().map(|p| row(p, &p.chosen, true)));
        out.extend(block.iter().map(|p| row(p, &p.rejected, false)));
    }
    out
}

fn empty_like(x: &TextOrMessages) -> TextOrMessages {
    match x {
        TextOrMessages::Text(_) => TextOrMessages::Text(String::new()),
        TextOrMessages::Messages(_) => TextOrMessages::Messages(vec![]),
    }
}

/// Parses one `{"prompt", "completion", "label"}` row; errors name the file, line and field.
pub fn parse_unpaired_row(path: &Path, row: &lm::jsonl::Row) -> Result<UnpairedExample> {
    let line = row.line;
    let obj = row
        .value
        .as_object()
        .ok_or_else(|| bad(path, line, "<row>", "expected a JSON object"))?;
    let prompt = prefs::text_or_messages(path, line, obj, "prompt")?;
    let completion = prefs::text_or_messages(path, line, obj, "completion")?;
    if matches!(
        (&prompt, &completion),
        (TextOrMessages::Text(_), TextOrMessages::Messages(_))
    ) {
        return Err(bad(
            path,
            line,
            "completion",
            "a message list after a text prompt; use messages for both",
        ));
    }
    let label = match obj.get("label") {
        Some(Value::Bool(b)) => *b,
        None => return Err(bad(path, line, "label", "missing (true or false)")),
        Some(v) => {
            return Err(bad(
                path,
                line,
                "label",
                format!("expected true (desirable) or false (undesirable), got {v}"),
            ))
        }
    };
    let tools = crate::sft::tools(obj).map_err(|reason| lm::Error::Data {
        path: path.to_path_buf(),
        line,
        reason,
    })?;
    Ok(UnpairedExample {
        line,
        prompt,
        completion,
        label,
        tools,
    })
}

/// `(prompt_ids, completion_ids)` as TRL 1.16's `KTOTrainer` tokenizes a row: strings get the
/// EOS text appended (unless there), message lists are templated (the prompt with the
/// generation prompt); the completion starts where `prompt` and `prompt + completion` first
/// differ. A message-list prompt with a string completion: templated prompt, then the
/// completion's tokens and EOS (as `data::prefs` does).
pub fn tokenize_unpaired(tok: &Tokenizer, ex: &UnpairedExample) -> Result<(Vec<u32>, Vec<u32>)> {
    // The pair tokenizer with both sides the same completion gives exactly this row's split.
    let pair = PrefExample {
        line: ex.line,
        prompt: Some(ex.prompt.clone()),
        chosen: ex.completion.clone(),
        rejected: ex.completion.clone(),
        margin: None,
        votes: None,
        agreement: None,
        tie: false,
        group: None,
        tools: ex.tools.clone(),
    };
    let (p, c, _) = prefs::tokenize_pair(tok, &pair)?;
    Ok((p, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn unpaired_rows_and_bad_labels_name_file_line_and_field() {
        let f = file(
            "{\"prompt\": \"Hi\", \"completion\": \" yes\", \"label\": true}\n\
             {\"prompt\": \"Hi\", \"completion\": \" no\", \"label\": false}\n",
        );
        let d = read_unpaired(f.path(), &ReadOptions::default()).expect("reads");
        let labels: Vec<bool> = d.examples.iter().map(|e| e.label).collect();
        assert_eq!((labels, d.paired), (vec![true, false], false));
        let f = file(
            "{\"prompt\": \"Hi\", \"completion\": \" yes\", \"label\": true}\n\
             {\"prompt\": \"Hi\", \"completion\": \" no\", \"label\": \"bad\"}\n",
        );
        let err = read_unpaired(f.path(), &ReadOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(":2") && err.contains("`label`"), "{err}");
        let lenient = ReadOptions {
            skip_bad_rows: true,
        };
        let d = read_unpaired(f.path(), &lenient).expect("skips");
        assert_eq!((d.examples.len(), d.skipped.len()), (1, 1));
    }

    #[test]
    fn pairs_split_chosen_rows_first_and_ties_are_left_out() {
        let f = file(
            "{\"prompt\": \"A\", \"chosen\": \" a\", \"rejected\": \" b\"}\n\
             {\"prompt\": \"B\", \"chosen\": \" c\", \"rejected\": \" d\", \"tie\": true}\n\
             {\"prompt\": \"C\", \"chosen\": \" e\", \"rejected\": \" f\"}\n",
        );
        let d = read_unpaired(f.path(), &ReadOptions::default()).expect("reads");
        let got: Vec<(usize, bool)> = d.examples.iter().map(|e| (e.line, e.label)).collect();
        assert_eq!(got, vec![(1, true), (3, true), (1, false), (3, false)]);
        assert_eq!((d.ties, d.paired), (1, true));
        assert_eq!(d.examples[2].completion, TextOrMessages::Text(" b".into()));
    }
}
