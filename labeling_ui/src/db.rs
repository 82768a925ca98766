//! Opening the database: WAL, foreign keys, full fsync on commit, migrations applied at start.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::error::Result;

/// The migrations in the workspace's `migrations/` folder, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Accepts a plain path (`labels.sqlite`) or a URL (`sqlite://labels.sqlite`, `sqlite::memory:`).
pub fn connect_options(db: &str) -> Result<SqliteConnectOptions> {
    let opts = if db.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(db)?
    } else {
        SqliteConnectOptions::new().filename(db)
    };
    Ok(tune(opts.create_if_missing(true)))
}

/// Settings every connection gets. `synchronous = FULL` makes each commit durable before we
/// acknowledge it; the writer batches commits so that fsync cost is shared.
pub fn tune(opts: SqliteConnectOptions) -> SqliteConnectOptions {
    opts.journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30))
        // Bigger page cache and memory-mapped reads: index inserts land all over the client-id
        // index, and page misses otherwise cost a syscall each as the database grows.
        .pragma("cache_size", "-65536")
        .pragma("mmap_size", "268435456")
        // No checkpoint inside a commit: the one that crosses the WAL threshold would stall
        // every queued labeler for a whole database fsync. `checkpointer` does it instead.
        .pragma("wal_autocheckpoint", "0")
}

/// Moves WAL frames into the database every second with a PASSIVE checkpoint, on its own
/// connection, so writers never wait for it. Ends when the pool is closed.
pub async fn checkpointer(pool: SqlitePool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!("WAL checkpoint failed: {e}");
        }
    }
}

/// Opens (creating if missing) and migrates the database.
pub async fn open(db: &str) -> Result<SqlitePool> {
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(connect_options(db)?)
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How a project is labeled.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One comparison of two responses at a time.
    Pairwise,
    /// K responses of one item put in order at once (issue #9).
    Ranking,
}

/// A project's settings, as the queue and export need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectInfo {
    pub id: i64,
    pub overlap: i64,
    pub mode: Mode,
    /// Responses shown per ranking (ranking mode only).
    pub k: Option<i64>,
}

/// Looks up a project's settings by name.
pub async fn project_info(pool: &SqlitePool, name: &str) -> Result<ProjectInfo> {
    let row = sqlx::query!(
        r#"SELECT id AS "id!", overlap, mode, k FROM projects WHERE name = ?"#,
        name
    )
    .fetch_optional(pool)
    .await?;
    let r = row.ok_or_else(|| crate::AppError::NotFound(format!("project '{name}'")))?;
    let mode = match r.mode.as_str() {
        "pairwise" => Mode::Pairwise,
        "ranking" => Mode::Ranking,
        other => {
            return Err(crate::AppError::Internal(format!(
                "project '{name}' has unknown mode '{other}'"
            )))
        }
    };
    Ok(ProjectInfo {
        id: r.id,
        overlap: r.overlap,
        mode,
        k: r.k,
    })
}
