//! Projects and item import. Rows are validated up front and written in one transaction, so a
//! bad file changes nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{SqliteConnection, SqlitePool};

use crate::db::{now_ms, project_info, Mode, ProjectInfo};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub items: usize,
    /// Pairwise comparisons added (0 in a ranking project).
    pub comparisons: usize,
    /// Items to rank added (ranking projects; 0 in a pairwise project).
    pub rankings: usize,
    /// The new items' ids, in the order given, for callers that keep data about them (blind
    /// evaluation records which model wrote which response). Not in the API's answer, which
    /// would otherwise grow with the file.
    #[serde(skip)]
    pub item_ids: Vec<i64>,
}

/// Creates a pairwise project. `overlap` is how many labelers see each comparison.
pub async fn create_project(pool: &SqlitePool, name: &str, overlap: i64) -> Result<i64> {
    insert_project(pool, name, overlap, Mode::Pairwise, None).await
}

/// Creates a ranking project: each labeler orders `k` (3-9) responses of an item at once;
/// `overlap` is how many labelers rank each item.
pub async fn create_ranking_project(
    pool: &SqlitePool,
    name: &str,
    overlap: i64,
    k: i64,
) -> Result<i64> {
    if !(3..=9).contains(&k) {
        return Err(AppError::BadRequest("k must be 3-9".into()));
    }
    insert_project(pool, name, overlap, Mode::Ranking, Some(k)).await
}

async fn insert_project(
    pool: &SqlitePool,
    name: &str,
    overlap: i64,
    mode: Mode,
    k: Option<i64>,
) -> Result<i64> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.contains('/') {
        return Err(AppError::BadRequest(
            "project name must be 1-100 characters without '/'".into(),
        ));
    }
    if !(1..=100).contains(&overlap) {
        return Err(AppError::BadRequest("overlap must be 1-100".into()));
    }
    let (now, mode) = (
        now_ms(),
        match mode {
            Mode::Pairwise => "pairwise",
            Mode::Ranking => "ranking",
        },
    );
    let res = sqlx::query!(
        "INSERT INTO projects (name, mode, overlap, k, created_at) VALUES (?, ?, ?, ?, ?)",
        name,
        mode,
        overlap,
        k,
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

/// Adds items to a project, all or nothing. In a pairwise project each item yields one
/// comparison per response pair; in a ranking project each item is ranked as a whole and needs
/// at least `k` responses (a random `k` of them are shown per assignment).
pub async fn import_items(
    pool: &SqlitePool,
    project: &str,
    items: Vec<ImportItem>,
) -> Result<ImportReport> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let report = import_items_in(&mut tx, project, items).await?;
    tx.commit().await?;
    Ok(report)
}

/// [`import_items`] inside the caller's transaction (begin it with `BEGIN IMMEDIATE`), so that
/// what the caller stores about the new items (by [`ImportReport::item_ids`]) commits with them
/// or not at all.
pub async fn import_items_in(
    conn: &mut SqliteConnection,
    project: &str,
    items: Vec<ImportItem>,
) -> Result<ImportReport> {
    let info = project_info(&mut *conn, project).await?;
    check_items(&info, &items)?;
    let ranking = info.mode == Mode::Ranking;
    let mut report = ImportReport {
        items: 0,
        comparisons: 0,
        rankings: 0,
        item_ids: Vec::with_capacity(items.len()),
    };
    for item in &items {
        let (id, comparisons) = insert_item(conn, info.id, info.overlap, ranking, item).await?;
        report.item_ids.push(id);
        report.comparisons += comparisons;
        report.items += 1;
    }
    if ranking {
        report.rankings = report.items;
    }
    // `n_comparisons` counts the units one labeler can label: items in a ranking project.
    let added = (report.comparisons + report.rankings) as i64;
    sqlx::query!(
        "UPDATE projects SET n_comparisons = n_comparisons + ? WHERE id = ?",
        added,
        info.id
    )
    .execute(&mut *conn)
    .await?;
    Ok(report)
}

/// Every item valid, and with at least K responses in a ranking project; else every bad item
/// by 1-based position.
fn check_items(info: &ProjectInfo, items: &[ImportItem]) -> Result<()> {
    let k = info.k.unwrap_or(2) as usize;
    let errors: Vec<LineError> = items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| {
            let err = validate(it).err().or_else(|| {
                (it.responses.len() < k).then(|| {
                    format!(
                        "this ranking project shows {k} responses; the item has {}",
                        it.responses.len()
                    )
                })
            });
            err.map(|message| LineError {
                line: i + 1,
                message,
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Import(errors))
    }
}

/// Inserts one item and its responses; returns its id and the comparisons added (none when
/// `ranking`, where the item itself is queued `overlap` times).
async fn insert_item(
    conn: &mut SqliteConnection,
    project_id: i64,
    overlap: i64,
    ranking: bool,
    item: &ImportItem,
) -> Result<(i64, usize)> {
    let (prompt_json, now) = (serde_json::to_string(&item.prompt)?, now_ms());
    let remaining = if ranking { overlap } else { 0 };
    let item_id = sqlx::query!(
        "INSERT INTO items (project_id, prompt_json, created_at, remaining) VALUES (?, ?, ?, ?)",
        project_id,
        prompt_json,
        now,
        remaining
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
    if ranking {
        return Ok((item_id, 0));
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
    Ok((item_id, pairs.len()))
}
