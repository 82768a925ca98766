//! Reading dataset files: JSONL (one object per line) or a JSON array, every row tagged with
//! its line number so errors can name it.
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// One row and the line it starts on (1-based).
#[derive(Debug, Clone)]
pub struct Row {
    pub line: usize,
    pub value: serde_json::Value,
}

/// Reads `path` as a JSON array (if it starts with `[`) or as JSONL; blank lines are skipped.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if text.trim_start().starts_with('[') {
        return read_array(path, &text);
    }
    let mut rows = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(line).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            line: i + 1,
            reason: invalid_json(&e),
        })?;
        rows.push(Row { line: i + 1, value });
    }
    Ok(rows)
}

fn read_array(path: &Path, text: &str) -> Result<Vec<Row>> {
    let values: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        line: e.line(),
        reason: invalid_json(&e),
    })?;
    // Line numbers of array elements: find each top-level element's opening line cheaply by
    // re-serialising is not possible, so report the element index (1-based) as the "line".
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, value)| Row { line: i + 1, value })
        .collect())
}

/// A JSON syntax error as `invalid JSON at column C: reason`. serde's own text ends with `at
/// line L column C` counted within the text it parsed (one line of a JSONL file is always line
/// 1 to it), so the caller names the file's line and this names only the column.
pub fn invalid_json(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(reason) => format!("invalid JSON at column {}: {reason}", e.column()),
        None => format!("invalid JSON: {text}"),
    }
}

/// Deserialises a row into `T`, naming the file, line and serde's reason on failure.
pub fn parse<T: DeserializeOwned>(path: &Path, row: &Row) -> Result<T> {
    serde_json::from_value(row.value.clone()).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        line: row.line,
        reason: e.to_string(),
    })
}

/// Writes rows as JSONL.
pub fn write_rows(path: &Path, rows: &[serde_json::Value]) -> Result<()> {
    let mut out = String::new();
    for r in rows {
        out.push_str(&r.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}
