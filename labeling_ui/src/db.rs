//! Opening the database: WAL, foreign keys, full fsync on commit, migrations applied at start.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

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

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL frames above which the checkpointer resets the log (4 MiB at the default 4 KiB page).
const RESTART_FRAMES: i64 = 1024;
/// How long a resetting checkpoint may wait for a writer or an old reader before it gives up:
/// the labelers' writes are paused meanwhile. Ordinary reads take a millisecond or two.
const RESTART_WAIT: Duration = Duration::from_millis(25);
/// Ticks without a reset attempt after one gave up: a long reader (an export of a big project)
/// then costs the labelers a 25 ms pause per second, not one per tick.
const HOLD_OFF_TICKS: u32 = 4;

/// Held by the writer task around each batch and by the checkpointer while it resets the WAL.
/// The lock is fair (FIFO), so the checkpointer gets its turn after the batch in flight instead
/// of polling for SQLite's write lock between back-to-back batches, which it could lose forever.
pub type WriteGate = std::sync::Arc<tokio::sync::Mutex<()>>;

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
        // A reset WAL is reused, not shrunk; after a burst (a big import is one transaction)
        // this cuts it back to 16 MiB at the next reset.
        .pragma("journal_size_limit", "16777216")
}

/// Keeps the WAL bounded while serving. Every tick a PASSIVE checkpoint copies frames into the
/// database without blocking anyone; but under steady writes it never catches up with the end
/// of the log, so SQLite never starts the log over and the file grows without bound (710 MB
/// after 44k labels). So once the WAL holds more than [`RESTART_FRAMES`], the writer is paused
/// through `gate` for a RESTART checkpoint, after which the next commit writes from the start
/// of the file again. Ends when the pool is closed.
pub async fn checkpointer(pool: SqlitePool, gate: WriteGate) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hold_off = 0;
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        match checkpoint(&pool, &gate, hold_off == 0).await {
            Ok(true) => hold_off = HOLD_OFF_TICKS,
            Ok(false) => hold_off = hold_off.saturating_sub(1),
            Err(e) => tracing::warn!("WAL checkpoint failed: {e}"),
        }
    }
}

/// One round: PASSIVE, then RESTART if the log is still long and `may_reset`. Returns whether
/// a reset was tried and postponed by a busy reader or writer.
async fn checkpoint(pool: &SqlitePool, gate: &WriteGate, may_reset: bool) -> Result<bool> {
    // Columns: busy (1 if it could not finish), frames in the log, frames checkpointed.
    let (_, frames, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    if frames < RESTART_FRAMES || !may_reset {
        return Ok(false);
    }
    // Its own short-waiting connection: a long reader makes it give up within RESTART_WAIT
    // rather than hold the labelers' writes for the pool's 30 s busy timeout.
    let opts = (*pool.connect_options()).clone().busy_timeout(RESTART_WAIT);
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    let done: std::result::Result<(i64, i64, i64), sqlx::Error> = {
        let _paused = gate.lock().await;
        sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
            .fetch_one(&mut conn)
            .await
    };
    conn.close().await?;
    let postponed = done?.0 != 0;
    if postponed {
        tracing::debug!("WAL reset postponed: a reader or writer was busy");
    }
    Ok(postponed)
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

/// Looks up a project's settings by name (`db`: a pool, or a connection inside a transaction).
pub async fn project_info<'e, E: sqlx::SqliteExecutor<'e>>(
    db: E,
    name: &str,
) -> Result<ProjectInfo> {
    let row = sqlx::query!(
        r#"SELECT id AS "id!", overlap, mode, k FROM projects WHERE name = ?"#,
        name
    )
    .fetch_optional(db)
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
