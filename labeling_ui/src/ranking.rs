//! Ranking mode (issue #9): hand out an item with K responses in a random order, store the
//! labeler's ranking of them (tiers of equal rank, best first, plus "unacceptable" flags), undo
//! it. The write side runs inside the writer's batch transaction like the pairwise queue.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sqlx::{SqliteConnection, SqlitePool};

use crate::db::now_ms;
use crate::error::{AppError, Result};
use crate::import::Prompt;
use crate::queue::{Outcome, Progress};

/// A submitted ranking, in the positions the page showed (0 = the response shown first).
#[derive(Debug, Clone)]
pub struct RankingSubmission {
    pub user_id: i64,
    pub assignment_id: i64,
    pub client_id: String,
    /// Tiers best first; the positions in one tier share a rank (a tie).
    pub tiers: Vec<Vec<usize>>,
    /// Positions flagged unacceptable: they must fill the last tiers, below every acceptable one.
    pub unacceptable: Vec<usize>,
}

/// Checks a ranking of `n` shown responses: every position exactly once, no empty tier, and
/// no tier mixing acceptable with unacceptable responses or an acceptable tier below an
/// unacceptable one. The message is meant for the client.
pub fn validate(tiers: &[Vec<usize>], unacceptable: &[usize], n: usize) -> Result<(), String> {
    let mut seen = vec![false; n];
    for &p in tiers.iter().flatten() {
        match seen.get_mut(p) {
            None => {
                return Err(format!(
                    "position {p} out of range (0-{})",
                    n.saturating_sub(1)
                ))
            }
            Some(true) => return Err(format!("position {p} ranked twice")),
            Some(s) => *s = true,
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(format!("position {missing} is not ranked"));
    }
    if tiers.iter().any(Vec::is_empty) {
        return Err("empty tier".into());
    }
    let mut bad = vec![false; n];
    for &p in unacceptable {
        match bad.get_mut(p) {
            Some(false) => bad[p] = true,
            _ => {
                return Err(format!(
                    "unacceptable position {p} out of range or repeated"
                ))
            }
        }
    }
    let mut below_bad = false;
    for tier in tiers {
        let n_bad = tier.iter().filter(|&&p| bad[p]).count();
        if n_bad != 0 && n_bad != tier.len() {
            return Err("a tier mixes acceptable and unacceptable responses".into());
        }
        if n_bad == 0 && below_bad {
            return Err("unacceptable responses must rank below every acceptable one".into());
        }
        below_bad |= n_bad > 0;
    }
    Ok(())
}

/// Returns the labeler's open ranking assignment, or takes the next item with open slots that
/// they have not ranked, showing a random `k` of its responses in a random order.
pub async fn next(
    conn: &mut SqliteConnection,
    user_id: i64,
    project_id: i64,
    k: i64,
) -> Result<Option<i64>> {
    let open = sqlx::query_scalar!(
        r#"SELECT id AS "id!" FROM assignments WHERE user_id = ? AND project_id = ? AND done = 0
           ORDER BY reopened_at DESC, id LIMIT 1"#,
        user_id,
        project_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if open.is_some() {
        return Ok(open);
    }
    let Some(item_id) = sqlx::query_scalar!(
        r#"SELECT i.id AS "id!" FROM items i INDEXED BY items_open
           WHERE i.project_id = ?1 AND i.remaining > 0
             AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = i.id AND a.user_id = ?2)
           ORDER BY i.id LIMIT 1"#,
        project_id,
        user_id
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let mut idx = sqlx::query_scalar!("SELECT idx FROM responses WHERE item_id = ?", item_id)
        .fetch_all(&mut *conn)
        .await?;
    idx.shuffle(&mut rand::rng());
    idx.truncate(k as usize);
    let (shown, now) = (serde_json::to_string(&idx)?, now_ms());
    // The `assignments_take_item` trigger decrements `items.remaining`.
    let id = sqlx::query_scalar!(
        r#"INSERT INTO assignments (project_id, item_id, comparison_id, user_id, swapped, shown_json, created_at)
           VALUES (?, ?, NULL, ?, 0, ?, ?) RETURNING id AS "id!""#,
        project_id,
        item_id,
        user_id,
        shown,
        now
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some(id))
}

/// Stores a ranking in canonical terms (`responses.idx`). A retry with a stored client id is
/// answered from the stored row and counts nothing.
pub async fn submit(conn: &mut SqliteConnection, s: &RankingSubmission) -> Result<Outcome> {
    if let Some(retry) = stored_retry(conn, s).await? {
        return Ok(retry);
    }
    let a = sqlx::query!(
        "SELECT shown_json, done FROM assignments WHERE id = ? AND user_id = ?",
        s.assignment_id,
        s.user_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| AppError::NotFound(format!("assignment {}", s.assignment_id)))?;
    let Some(shown_json) = a.shown_json else {
        return Err(AppError::BadRequest(
            "assignment is a pairwise comparison; submit it to /api/labels".into(),
        ));
    };
    if a.done != 0 {
        return Err(AppError::Conflict(
            "assignment already ranked; undo it first".into(),
        ));
    }
    let shown: Vec<i64> = serde_json::from_str(&shown_json)?;
    validate(&s.tiers, &s.unacceptable, shown.len()).map_err(AppError::BadRequest)?;
    let (tiers, bad) = canonical(&shown, s)?;
    let now = now_ms();
    // The `rankings_done` trigger marks the assignment done and counts progress.
    let id = sqlx::query_scalar!(
        r#"INSERT INTO rankings (assignment_id, client_id, tiers_json, unacceptable_json, created_at)
           VALUES (?, ?, ?, ?, ?) RETURNING id AS "id!""#,
        s.assignment_id,
        s.client_id,
        tiers,
        bad,
        now
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Outcome::Submitted {
        label_id: id,
        duplicate: false,
    })
}

/// Tiers and flags as JSON in `responses.idx` terms (sorted within a tier), from shown positions.
fn canonical(shown: &[i64], s: &RankingSubmission) -> Result<(String, String)> {
    let canon = |ps: &[usize]| -> Vec<i64> {
        let mut v: Vec<i64> = ps.iter().map(|&p| shown[p]).collect();
        v.sort_unstable();
        v
    };
    let tiers: Vec<Vec<i64>> = s.tiers.iter().map(|t| canon(t)).collect();
    Ok((
        serde_json::to_string(&tiers)?,
        serde_json::to_string(&canon(&s.unacceptable))?,
    ))
}

/// The answer to a retry of a stored submission (same client id, assignment and labeler);
/// a client id reused for anything else is a conflict.
async fn stored_retry(
    conn: &mut SqliteConnection,
    s: &RankingSubmission,
) -> Result<Option<Outcome>> {
    let seen = sqlx::query!(
        r#"SELECT r.id AS "id!", r.assignment_id, a.user_id FROM rankings r
           JOIN assignments a ON a.id = r.assignment_id WHERE r.client_id = ?"#,
        s.client_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    match seen {
        Some(seen) if seen.assignment_id == s.assignment_id && seen.user_id == s.user_id => {
            Ok(Some(Outcome::Submitted {
                label_id: seen.id,
                duplicate: true,
            }))
        }
        Some(_) => Err(AppError::Conflict(
            "client_id already used for another ranking".into(),
        )),
        None => Ok(None),
    }
}

/// Marks the labeler's latest live ranking in the project undone; returns its assignment.
pub async fn undo(conn: &mut SqliteConnection, user_id: i64, project_id: i64) -> Result<i64> {
    let last = sqlx::query!(
        r#"SELECT r.id AS "id!", r.assignment_id FROM rankings r
           JOIN assignments a ON a.id = r.assignment_id
           WHERE a.user_id = ? AND a.project_id = ? AND r.undone_at IS NULL
           ORDER BY r.id DESC LIMIT 1"#,
        user_id,
        project_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| AppError::NotFound("ranking to undo".into()))?;
    let now = now_ms();
    // The `rankings_undo` trigger reopens the assignment.
    sqlx::query!(
        "UPDATE rankings SET undone_at = ? WHERE id = ?",
        now,
        last.id
    )
    .execute(&mut *conn)
    .await?;
    Ok(last.assignment_id)
}

/// An item as the ranking page shows it: responses in the assignment's recorded order.
#[derive(Debug, Serialize, Deserialize)]
pub struct ShownRanking {
    pub assignment_id: i64,
    pub prompt: Prompt,
    pub responses: Vec<String>,
}

/// The item behind a ranking assignment, with its labeler's progress.
pub async fn load_shown(pool: &SqlitePool, assignment_id: i64) -> Result<(ShownRanking, Progress)> {
    let r = sqlx::query!(
        r#"SELECT a.shown_json, a.item_id, i.prompt_json,
                  (SELECT g.labeled FROM labeler_progress g
                   WHERE g.user_id = a.user_id AND g.project_id = a.project_id) AS "labeled: i64",
                  p.n_comparisons
           FROM assignments a
           JOIN projects p ON p.id = a.project_id
           JOIN items i ON i.id = a.item_id
           WHERE a.id = ?"#,
        assignment_id
    )
    .fetch_one(pool)
    .await?;
    let shown: Vec<i64> = serde_json::from_str(r.shown_json.as_deref().unwrap_or("[]"))?;
    let bodies = sqlx::query!(
        "SELECT idx, body FROM responses WHERE item_id = ?",
        r.item_id
    )
    .fetch_all(pool)
    .await?;
    let text = |i: i64| -> Result<String> {
        bodies
            .iter()
            .find(|b| b.idx == i)
            .map(|b| b.body.clone())
            .ok_or_else(|| AppError::Internal(format!("response {i} of an assignment is gone")))
    };
    let responses = shown.iter().map(|&i| text(i)).collect::<Result<_>>()?;
    let progress = Progress {
        labeled: r.labeled.unwrap_or(0),
        comparisons: r.n_comparisons,
    };
    Ok((
        ShownRanking {
            assignment_id,
            prompt: serde_json::from_str(&r.prompt_json)?,
            responses,
        },
        progress,
    ))
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn validation_rules() {
        assert_eq!(validate(&[vec![1], vec![0, 2], vec![3]], &[3], 4), Ok(()));
        assert_eq!(validate(&[vec![0, 1, 2]], &[], 3), Ok(()));
        assert!(validate(&[vec![0], vec![1]], &[], 3).is_err(), "missing");
        assert!(
            validate(&[vec![0], vec![0, 1, 2]], &[], 3).is_err(),
            "twice"
        );
        assert!(validate(&[vec![0, 1, 3]], &[], 3).is_err(), "range");
        assert!(validate(&[vec![0], vec![], vec![1, 2]], &[], 3).is_err());
        assert!(
            validate(&[vec![0], vec![1, 2]], &[1], 3).is_err(),
            "mixed tier"
        );
        assert!(
            validate(&[vec![0], vec![1], vec![2]], &[1], 3).is_err(),
            "bad above good"
        );
        assert!(validate(&[vec![0], vec![1], vec![2]], &[2, 2], 3).is_err());
    }
}
