//! The labeling queue: hand out the next comparison, record a label, undo the last one. The
//! write side runs inside the writer's batch transaction (see `writer.rs`).

use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::{SqliteConnection, SqlitePool};

use crate::db::now_ms;
use crate::error::{AppError, Result};
use crate::import::Prompt;
use crate::ranking;

/// What the labeler clicked, in the order the page showed the responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShownChoice {
    A,
    B,
    #[serde(rename = "tie")]
    Tie,
    #[serde(rename = "both_bad")]
    BothBad,
}

impl ShownChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            ShownChoice::A => "A",
            ShownChoice::B => "B",
            ShownChoice::Tie => "tie",
            ShownChoice::BothBad => "both_bad",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Op {
    Next {
        user_id: i64,
        project_id: i64,
    },
    Submit(Submission),
    Undo {
        user_id: i64,
        project_id: i64,
    },
    /// Ranking mode: the next item, showing `k` responses.
    NextRanking {
        user_id: i64,
        project_id: i64,
        k: i64,
    },
    SubmitRanking(crate::ranking::RankingSubmission),
    UndoRanking {
        user_id: i64,
        project_id: i64,
    },
}

#[derive(Debug, Clone)]
pub struct Submission {
    pub user_id: i64,
    pub assignment_id: i64,
    pub client_id: String,
    pub choice: ShownChoice,
    pub rationale: Option<String>,
}

#[derive(Debug)]
pub enum Outcome {
    /// The assignment to show, or `None` when nothing is left for this labeler.
    Assigned(Option<i64>),
    /// A stored label (or ranking: `label_id` is then the ranking's id).
    Submitted { label_id: i64, duplicate: bool },
    /// The assignment whose label was undone.
    Undone(i64),
}

pub async fn apply(conn: &mut SqliteConnection, op: &Op) -> Result<Outcome> {
    match op {
        Op::Next {
            user_id,
            project_id,
        } => next(conn, *user_id, *project_id)
            .await
            .map(Outcome::Assigned),
        Op::Submit(s) => submit(conn, s).await,
        Op::Undo {
            user_id,
            project_id,
        } => undo(conn, *user_id, *project_id).await.map(Outcome::Undone),
        Op::NextRanking {
            user_id,
            project_id,
            k,
        } => ranking::next(conn, *user_id, *project_id, *k)
            .await
            .map(Outcome::Assigned),
        Op::SubmitRanking(s) => ranking::submit(conn, s).await,
        Op::UndoRanking {
            user_id,
            project_id,
        } => ranking::undo(conn, *user_id, *project_id)
            .await
            .map(Outcome::Undone),
    }
}

async fn next(conn: &mut SqliteConnection, user_id: i64, project_id: i64) -> Result<Option<i64>> {
    // Common case in one statement: no open assignment, so pick and take the first open
    // comparison this labeler has not had (the `assignments_take` trigger decrements
    // `remaining`). INDEXED BY: only the partial index skips handed-out work; the planner's
    // other choice scans every comparison already taken, which grows with the project.
    let (swapped, now) = (rand::rng().random_bool(0.5) as i64, now_ms());
    let taken = sqlx::query_scalar!(
        r#"INSERT INTO assignments (project_id, item_id, comparison_id, user_id, swapped, created_at)
           SELECT c.project_id, c.item_id, c.id, ?1, ?2, ?3
           FROM comparisons c INDEXED BY comparisons_open
           WHERE c.project_id = ?4 AND c.remaining > 0
             AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.comparison_id = c.id AND a.user_id = ?1)
             AND NOT EXISTS (SELECT 1 FROM assignments o
                             WHERE o.user_id = ?1 AND o.project_id = ?4 AND o.done = 0)
           ORDER BY c.id LIMIT 1
           RETURNING id AS "id!""#,
        user_id,
        swapped,
        now,
        project_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if taken.is_some() {
        return Ok(taken);
    }
    // An open assignment (unlabeled, or reopened by undo) comes back before anything new, so a
    // reload shows the same comparison and undo returns to the undone one. `None` here means
    // the queue is empty for this labeler.
    Ok(sqlx::query_scalar!(
        r#"SELECT id AS "id!" FROM assignments WHERE user_id = ? AND project_id = ? AND done = 0
           ORDER BY reopened_at DESC, id LIMIT 1"#,
        user_id,
        project_id
    )
    .fetch_optional(&mut *conn)
    .await?)
}

async fn submit(conn: &mut SqliteConnection, s: &Submission) -> Result<Outcome> {
    // Fast path, one statement: insert only if the assignment is this labeler's and still open;
    // a reused client id hits the UNIQUE constraint and inserts nothing. The shown choice is
    // mapped to canonical first/second with the assignment's recorded A/B order.
    let (shown, now) = (s.choice.as_str(), now_ms());
    let inserted = sqlx::query_scalar!(
        r#"INSERT INTO labels (assignment_id, client_id, choice, rationale, created_at)
           SELECT a.id, ?1,
                  CASE WHEN ?2 IN ('tie', 'both_bad') THEN ?2
                       WHEN (?2 = 'A') = (a.swapped = 0) THEN 'first' ELSE 'second' END,
                  ?3, ?4
           FROM assignments a
           WHERE a.id = ?5 AND a.user_id = ?6 AND a.done = 0 AND a.comparison_id IS NOT NULL
           ON CONFLICT DO NOTHING
           RETURNING id AS "id!""#,
        s.client_id,
        shown,
        s.rationale,
        now,
        s.assignment_id,
        s.user_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(label_id) => Ok(Outcome::Submitted {
            label_id,
            duplicate: false,
        }),
        None => explain_rejected(conn, s).await,
    }
}

/// Slow path after the insert did nothing: a retry, a foreign or unknown assignment, or one
/// that is already labeled.
async fn explain_rejected(conn: &mut SqliteConnection, s: &Submission) -> Result<Outcome> {
    let seen = sqlx::query!(
        r#"SELECT l.id AS "id!", l.assignment_id, a.user_id FROM labels l
           JOIN assignments a ON a.id = l.assignment_id WHERE l.client_id = ?"#,
        s.client_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(seen) = seen {
        // A retry of a committed submission: answer as before, count nothing.
        if seen.assignment_id == s.assignment_id && seen.user_id == s.user_id {
            return Ok(Outcome::Submitted {
                label_id: seen.id,
                duplicate: true,
            });
        }
        return Err(AppError::Conflict(
            "client_id already used for another label".into(),
        ));
    }
    let pairwise = sqlx::query_scalar!(
        r#"SELECT comparison_id IS NOT NULL AS "pairwise!: bool" FROM assignments
           WHERE id = ? AND user_id = ?"#,
        s.assignment_id,
        s.user_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    match pairwise {
        None => Err(AppError::NotFound(format!(
            "assignment {}",
            s.assignment_id
        ))),
        Some(false) => Err(AppError::BadRequest(
            "assignment is a ranking; submit it to /api/rankings".into(),
        )),
        Some(true) => Err(AppError::Conflict(
            "assignment already labeled; undo it first".into(),
        )),
    }
}

async fn undo(conn: &mut SqliteConnection, user_id: i64, project_id: i64) -> Result<i64> {
    let last = sqlx::query!(
        r#"SELECT l.id AS "id!", l.assignment_id FROM labels l
           JOIN assignments a ON a.id = l.assignment_id
           WHERE a.user_id = ? AND a.project_id = ? AND l.undone_at IS NULL
           ORDER BY l.id DESC LIMIT 1"#,
        user_id,
        project_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| AppError::NotFound("label to undo".into()))?;
    // The `labels_undo` trigger reopens the assignment.
    let now = now_ms();
    sqlx::query!("UPDATE labels SET undone_at = ? WHERE id = ?", now, last.id)
        .execute(&mut *conn)
        .await?;
    Ok(last.assignment_id)
}

/// A comparison as the page shows it: A/B already in the assignment's randomised order.
#[derive(Debug, Serialize)]
pub struct Shown {
    pub assignment_id: i64,
    pub prompt: Prompt,
    pub a: String,
    pub b: String,
}

/// The comparison behind an assignment, with its labeler's progress (one query: this runs on
/// every label).
pub async fn load_shown(pool: &SqlitePool, assignment_id: i64) -> Result<(Shown, Progress)> {
    let r = sqlx::query!(
        r#"SELECT a.swapped, i.prompt_json, r1.body AS first_body, r2.body AS second_body,
                  (SELECT g.labeled FROM labeler_progress g
                   WHERE g.user_id = a.user_id AND g.project_id = a.project_id) AS "labeled: i64",
                  p.n_comparisons
           FROM assignments a
           JOIN projects p ON p.id = a.project_id
           JOIN comparisons c ON c.id = a.comparison_id
           JOIN items i ON i.id = c.item_id
           JOIN responses r1 ON r1.id = c.first_id
           JOIN responses r2 ON r2.id = c.second_id
           WHERE a.id = ?"#,
        assignment_id
    )
    .fetch_one(pool)
    .await?;
    let (a, b) = if r.swapped != 0 {
        (r.second_body, r.first_body)
    } else {
        (r.first_body, r.second_body)
    };
    let prompt = serde_json::from_str(&r.prompt_json)?;
    let progress = Progress {
        labeled: r.labeled.unwrap_or(0),
        comparisons: r.n_comparisons,
    };
    Ok((
        Shown {
            assignment_id,
            prompt,
            a,
            b,
        },
        progress,
    ))
}

/// A labeler's own progress in a project.
#[derive(Debug, Serialize)]
pub struct Progress {
    pub labeled: i64,
    pub comparisons: i64,
}

pub async fn progress(pool: &SqlitePool, user_id: i64, project_id: i64) -> Result<Progress> {
    Ok(sqlx::query_as!(
        Progress,
        r#"SELECT COALESCE((SELECT labeled FROM labeler_progress
                            WHERE user_id = ?1 AND project_id = ?2), 0) AS "labeled!: i64",
                  n_comparisons AS comparisons
           FROM projects WHERE id = ?2"#,
        user_id,
        project_id
    )
    .fetch_one(pool)
    .await?)
}
