//! Evaluation prompts: rows `{"prompt", "id"?, "group"?, "variant"?, "category"?}`. Prompts of
//! one `group` are rephrasings of one request (`variant`: original, specific, neutral,
//! constrained, or anything else), so the report can show how behaviour shifts across them.
use crate::error::{Error, Result};
use lm::jsonl::Row;
use lm::TextOrMessages;
use serde_json::Value;
use std::path::Path;

/// The shipped edge-case set (`compare/data/edge_cases.jsonl`): 18 groups of 4 rephrasings in
/// six categories (sensitive instructions, offensive bait, prompt injection, ambiguous asks,
/// false premises, medical/legal/financial advice). `rudder compare` uses it without `--prompts`.
pub const DEFAULT_PROMPTS: &str = include_str!("../data/edge_cases.jsonl");

/// Name the default set is reported under in errors and the report.
pub const DEFAULT_SOURCE: &str = "edge_cases.jsonl (built in)";

/// One evaluation prompt.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvalPrompt {
    pub id: String,
    pub group: String,
    pub variant: String,
    pub category: String,
    pub prompt: TextOrMessages,
}

/// Reads a prompt file (JSONL or a JSON array), or the built-in set when `path` is None.
pub fn load(path: Option<&Path>) -> Result<Vec<EvalPrompt>> {
    match path {
        Some(p) => from_rows(lm::jsonl::read_rows(p)?, &p.display().to_string()),
        None => parse_jsonl(DEFAULT_PROMPTS, DEFAULT_SOURCE),
    }
}

/// Parses JSONL text (blank lines skipped); errors name `source`, the line and the field.
pub fn parse_jsonl(text: &str, source: &str) -> Result<Vec<EvalPrompt>> {
    let mut rows = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(line).map_err(|e| Error::Data {
            path: source.into(),
            line: i + 1,
            reason: lm::jsonl::invalid_json(&e),
        })?;
        rows.push(Row { line: i + 1, value });
    }
    from_rows(rows, source)
}

fn from_rows(rows: Vec<Row>, source: &str) -> Result<Vec<EvalPrompt>> {
    let mut out: Vec<EvalPrompt> = vec![];
    for row in rows {
        let p = one(&row, source)?;
        if out.iter().any(|q| q.id == p.id) {
            return Err(bad(
                source,
                row.line,
                format!("field `id`: `{}` repeats", p.id),
            ));
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!("{source}: no prompts")));
    }
    Ok(out)
}

fn bad(source: &str, line: usize, reason: String) -> Error {
    Error::Data {
        path: source.into(),
        line,
        reason,
    }
}

fn one(row: &Row, source: &str) -> Result<EvalPrompt> {
    let obj = row
        .value
        .as_object()
        .ok_or_else(|| bad(source, row.line, "expected a JSON object".into()))?;
    let text = |k: &str| -> Result<Option<String>> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(bad(
                source,
                row.line,
                format!("field `{k}`: expected a non-empty string"),
            )),
        }
    };
    let prompt = obj
        .get("prompt")
        .ok_or_else(|| bad(source, row.line, "field `prompt`: missing".into()))?;
    let prompt: TextOrMessages = serde_json::from_value(prompt.clone()).map_err(|_| {
        bad(
            source,
            row.line,
            "field `prompt`: expected a string or a list of {\"role\", \"content\"}".into(),
        )
    })?;
    let empty = match &prompt {
        TextOrMessages::Text(t) => t.trim().is_empty(),
        TextOrMessages::Messages(m) => m.is_empty(),
    };
    if empty {
        return Err(bad(source, row.line, "field `prompt`: empty".into()));
    }
    let id = text("id")?.unwrap_or_else(|| format!("line-{}", row.line));
    Ok(EvalPrompt {
        group: text("group")?.unwrap_or_else(|| id.clone()),
        variant: text("variant")?.unwrap_or_else(|| "original".into()),
        category: text("category")?.unwrap_or_else(|| "uncategorised".into()),
        id,
        prompt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_has_groups_of_rephrasings() {
        let ps = load(None).unwrap();
        assert!(ps.len() >= 60, "{}", ps.len());
        let mut groups = std::collections::BTreeMap::<&str, Vec<&str>>::new();
        for p in &ps {
            groups.entry(&p.group).or_default().push(&p.variant);
        }
        assert!(groups.len() >= 15);
        for (g, vs) in groups {
            assert_eq!(
                vs,
                ["original", "specific", "neutral", "constrained"],
                "group {g}"
            );
        }
        let cats: std::collections::BTreeSet<_> = ps.iter().map(|p| &p.category).collect();
        assert_eq!(cats.len(), 6);
    }

    #[test]
    fn bad_rows_name_line_and_field() {
        let e = parse_jsonl("{\"prompt\": \"a\"}\n\n{\"prompt\": 3}\n", "p.jsonl").unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.jsonl:3: field `prompt`: expected a string or a list of {\"role\", \"content\"}"
        );
        let e = parse_jsonl("{\"prompt\": \"a\", \"group\": 1}", "p.jsonl").unwrap_err();
        assert!(e.to_string().starts_with("p.jsonl:1: field `group`"), "{e}");
        let e = parse_jsonl(
            "{\"id\": \"x\", \"prompt\": \"a\"}\n{\"id\": \"x\", \"prompt\": \"b\"}",
            "p",
        )
        .unwrap_err();
        assert!(e.to_string().contains("p:2: field `id`"), "{e}");
        let ok = parse_jsonl("{\"prompt\": \"hi\"}", "p").unwrap();
        assert_eq!(
            (ok[0].id.as_str(), ok[0].group.as_str()),
            ("line-1", "line-1")
        );
    }
}
