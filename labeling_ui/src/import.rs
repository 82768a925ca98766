//! Projects and item import. Rows are validated up front and written in one transaction, so a
//! bad file changes nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::SqlitePool;

use crate::db::{now_ms, project_by_name};
use crate::error::{AppError, LineError, Result};

/// A chat message, as in TRL's conversational format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A prompt: plain text or a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Messages(Vec<Message>),
}

/// One item to label: a prompt and two or more candidate responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportItem {
    pub prompt: Prompt,
    pub responses: Vec<String>,
}

/// What an import added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub items: usize,
    pub comparisons: usize,
}

/// Creates a pairwise project. `overlap` is how many labelers see each comparison.
pub async fn create_project(pool: &SqlitePool, name: &str, overlap: i64) -> Result<i64> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.contains('/') {
        return Err(AppError::BadRequest(
            "project name must be 1-100 characters without '/'".into(),
        ));
    }
    if !(1..=100).contains(&overlap) {
        return Err(AppError::BadRequest("overlap must be 1-100".into()));
    }
    let now = now_ms();
    let res = sqlx::query!(
        "INSERT INTO projects (name, mode, overlap, created_at) VALUES (?, 'pairwise', ?, ?)",
        name,
        overlap,
        now
    )
    .execute(pool)
    .await;
    match res {
        Ok(r) => Ok(r.last_insert_rowid()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(AppError::Conflict(
            format!("project '{name}' already exists"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// TRL pair responses are a string or a message list (whose last message is the response).
fn response_text(v: &Value) -> std::result::Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(_) => {
            let msgs: Vec<Message> =
                serde_json::from_value(v.clone()).map_err(|e| format!("response messages: {e}"))?;
            msgs.last()
                .map(|m| m.content.clone())
                .ok_or_else(|| "response message list is empty".to_string())
        }
        _ => Err("a response must be a string or a list of messages".into()),
    }
}

fn parse_row(line: &str) -> std::result::Result<ImportItem, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v.as_object().ok_or("row must be a JSON object")?;
    let prompt: Prompt =
        serde_json::from_value(obj.get("prompt").cloned().ok_or("missing \"prompt\"")?)
            .map_err(|_| "\"prompt\" must be a string or a list of {role, content} messages")?;
    let responses = match (obj.get("responses"), obj.get("chosen"), obj.get("rejected")) {
        (Some(Value::Array(rs)), None, None) => rs
            .iter()
            .map(response_text)
            .collect::<std::result::Result<_, _>>()?,
        (Some(_), None, None) => return Err("\"responses\" must be a list of strings".into()),
        (None, Some(c), Some(r)) => vec![response_text(c)?, response_text(r)?],
        _ => {
            return Err("need \"responses\" (2 or more) or both \"chosen\" and \"rejected\"".into())
        }
    };
    let item = ImportItem { prompt, responses };
    validate(&item)?;
    Ok(item)
}

fn validate(item: &ImportItem) -> std::result::Result<(), String> {
    match &item.prompt {
        Prompt::Text(t) if t.trim().is_empty() => return Err("\"prompt\" is empty".into()),
        Prompt::Messages(m) if m.is_empty() => return Err("\"prompt\" has no messages".into()),
        _ => {}
    }
    if item.responses.len() < 2 {
        return Err("need at least 2 responses".into());
    }
    if item.responses.len() > 16 {
        return Err("at most 16 responses per item".into());
    }
    Ok(())
}

const MAX_REPORTED: usize = 1000;

/// Parses JSONL (blank lines skipped). Bad rows are reported with their 1-based line numbers
/// (the first 1000, then a count, so the answer stays small however broken the file is).
pub fn parse_jsonl(text: &str) -> Result<Vec<ImportItem>> {
    let (mut items, mut errors, mut bad) = (Vec::new(), Vec::new(), 0usize);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(line) {
            Ok(item) => items.push(item),
            Err(message) => {
                bad += 1;
                if errors.len() < MAX_REPORTED {
                    errors.push(LineError {
                        line: i + 1,
                        message,
                    });
                }
            }
        }
    }
    if bad > errors.len() {
        let message = format!("{} more bad rows not listed", bad - errors.len());
        errors.push(LineError { line: 0, message });
    }
    if !errors.is_empty() {
        return Err(AppError::Import(errors));
    }
    if items.is_empty() {
        return Err(AppError::BadRequest("no rows to import".into()));
    }
    Ok(items)
}

/// Adds items to a project, all or nothing. Each item yields one comparison per response pair.
pub async fn import_items(
    pool: &SqlitePool,
    project: &str,
    items: Vec<ImportItem>,
) -> Result<ImportReport> {
    let errors: Vec<LineError> = items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| {
            validate(it).err().map(|message| LineError {
                line: i + 1,
                message,
            })
        })
        .collect();
    if !errors.is_empty() {
        return Err(AppError::Import(errors));
    }
    let (project_id, overlap) = project_by_name(pool, project).await?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut report = ImportReport {
        items: 0,
        comparisons: 0,
    };
    for item in &items {
        report.comparisons += insert_item(&mut tx, project_id, overlap, item).await?;
        report.items += 1;
    }
    let added = report.comparisons as i64;
    sqlx::query!(
        "UPDATE projects SET n_comparisons = n_comparisons + ? WHERE id = ?",
        added,
        project_id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(report)
}

async fn insert_item(
    conn: &mut sqlx::SqliteConnection,
    project_id: i64,
    overlap: i64,
    item: &ImportItem,
) -> Result<usize> {
    let (prompt_json, now) = (serde_json::to_string(&item.prompt)?, now_ms());
    let item_id = sqlx::query!(
        "INSERT INTO items (project_id, prompt_json, created_at) VALUES (?, ?, ?)",
        project_id,
        prompt_json,
        now
    )
    .execute(&mut *conn)
    .await?
    .last_insert_rowid();
    let mut ids = Vec::with_capacity(item.responses.len());
    for (idx, body) in item.responses.iter().enumerate() {
        let idx = idx as i64;
        let r = sqlx::query!(
            "INSERT INTO responses (item_id, idx, body) VALUES (?, ?, ?)",
            item_id,
            idx,
            body
        )
        .execute(&mut *conn)
        .await?;
        ids.push(r.last_insert_rowid());
    }
    let mut pairs = Vec::new();
    for i in 0..ids.len() {
        for j in i + 1..ids.len() {
            pairs.push((ids[i], ids[j]));
        }
    }
    for (first, second) in &pairs {
        sqlx::query!(
            "INSERT INTO comparisons (project_id, item_id, first_id, second_id, remaining) VALUES (?, ?, ?, ?, ?)",
            project_id,
            item_id,
            first,
            second,
            overlap
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(pairs.len())
}
