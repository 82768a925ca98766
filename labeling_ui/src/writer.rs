//! Group commit. Every labeling write (assign, submit, undo) goes through one task that drains
//! the queue, applies the whole batch in one `BEGIN IMMEDIATE` transaction and answers each caller
//! only after COMMIT returns. With `synchronous = FULL`, one fsync covers the whole batch, which
//! is how we get thousands of durable submissions per second out of SQLite. A single writer also
//! means no SQLITE_BUSY races between labelers.

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::db::WriteGate;
use crate::error::{AppError, Result};
use crate::queue::{apply, Op, Outcome};

const MAX_BATCH: usize = 256;

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// Handle to the writer task. Cloning is cheap.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task. Must be called inside a Tokio runtime. `gate` is held around
    /// each batch, so the WAL checkpointer can pause the writer between two batches.
    pub fn spawn(pool: SqlitePool, gate: WriteGate) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer_loop(pool, rx, gate));
        Writer { tx }
    }

    /// Runs one write and waits until it is committed (or rejected).
    pub async fn run(&self, op: Op) -> Result<Outcome> {
        let mut out = self.run_many(vec![op]).await;
        out.pop()
            .unwrap_or_else(|| Err(AppError::Internal("writer gave no answer".into())))
    }

    /// Queues several writes back to back (applied in order, usually in one batch) and waits
    /// for all of them.
    pub async fn run_many(&self, ops: Vec<Op>) -> Vec<Result<Outcome>> {
        let gone = || AppError::Internal("writer task stopped".into());
        let mut waiting = Vec::with_capacity(ops.len());
        for op in ops {
            let (reply, rx) = oneshot::channel();
            match self.tx.send(Job { op, reply }).await {
                Ok(()) => waiting.push(Some(rx)),
                Err(_) => waiting.push(None),
            }
        }
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            out.push(match rx {
                Some(rx) => rx.await.unwrap_or_else(|_| Err(gone())),
                None => Err(gone()),
            });
        }
        out
    }
}

async fn writer_loop(pool: SqlitePool, mut rx: mpsc::Receiver<Job>, gate: WriteGate) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let ops: Vec<&Op> = batch.iter().map(|j| &j.op).collect();
        let result = {
            let _turn = gate.lock().await;
            run_batch(&pool, &ops).await
        };
        match result {
            Ok(results) => {
                for (job, res) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(res);
                }
            }
            Err(e) => {
                // Nothing in the batch was committed; callers see a 500 and retry with the same
                // client ids, so no click is lost and none counted twice.
                tracing::error!(error = %e, size = batch.len(), "write batch failed");
                for job in batch.drain(..) {
                    let _ = job
                        .reply
                        .send(Err(AppError::Internal(format!("batch failed: {e}"))));
                }
            }
        }
    }
}

async fn run_batch(pool: &SqlitePool, ops: &[&Op]) -> Result<Vec<Result<Outcome>>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let res = apply(&mut tx, op).await;
        // Client errors (404, 409) only concern their own op; a database error may have left the
        // transaction in an unknown state, so the whole batch is abandoned.
        if let Err(e) = &res {
            if e.status().is_server_error() {
                return Err(AppError::Internal(e.to_string()));
            }
        }
        results.push(res);
    }
    tx.commit().await?;
    Ok(results)
}
