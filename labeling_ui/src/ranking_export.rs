//! Ranking export: each stored ranking is expanded into `{"prompt","chosen","rejected"}` pairs
//! (one per ordered pair of responses in distinct tiers), or written as it is (`raw`).
//!
//! Rankings are not merged across labelers: each ranking contributes its own pairs, tagged
//! `"group": <ranking id>` so a trainer can keep one ranking's pairs together (InstructGPT put
//! all K(K-1)/2 pairs of a ranking in one batch element: as separate examples they are highly
//! correlated and the reward model overfits).

use std::collections::HashMap;

use serde_json::{json, Value};
use sqlx::SqlitePool;

use crate::error::{AppError, Result};
use crate::export::{completion, ExportOptions, Ties};
use crate::import::Prompt;

/// One expanded comparison, in `responses.idx` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RankedPair {
    pub chosen: i64,
    pub rejected: i64,
    /// Tier of `rejected` minus tier of `chosen` (1 for neighbouring ranks).
    pub rank_gap: usize,
}

/// Every (better, worse) pair across distinct tiers; responses in one tier (a tie) give no pair.
/// Tiers are best first; unacceptable responses are already in the last tiers, so they lose to
/// every acceptable one. Order: by the better tier, then the worse tier, then within tiers.
pub fn expand(tiers: &[Vec<i64>]) -> Vec<RankedPair> {
    let mut out = Vec::new();
    for (t, better) in tiers.iter().enumerate() {
        for (gap, worse) in tiers[t + 1..].iter().enumerate() {
            for &chosen in better {
                for &rejected in worse {
                    out.push(RankedPair {
                        chosen,
                        rejected,
                        rank_gap: gap + 1,
                    });
                }
            }
        }
    }
    out
}

/// splitmix64: a fixed, dependency-free generator, so a re-export picks the same pairs.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Keeps at most `max` pairs: a uniform random subset seeded by `seed` (the ranking id), in
/// expansion order. Uniform rather than "largest gaps first", which would keep only easy pairs.
pub fn cap(pairs: Vec<RankedPair>, max: usize, seed: u64) -> Vec<RankedPair> {
    if pairs.len() <= max {
        return pairs;
    }
    let mut idx: Vec<usize> = (0..pairs.len()).collect();
    let mut state = seed;
    for i in 0..max {
        let j = i + (splitmix(&mut state) % (idx.len() - i) as u64) as usize;
        idx.swap(i, j);
    }
    let mut keep = idx[..max].to_vec();
    keep.sort_unstable();
    keep.into_iter().map(|i| pairs[i]).collect()
}

/// One live ranking with what the export needs.
struct Stored {
    id: i64,
    labeler: String,
    item_id: i64,
    prompt: Prompt,
    /// `responses.idx` in the order the page showed them.
    shown: Vec<i64>,
    tiers: Vec<Vec<i64>>,
    unacceptable: Vec<i64>,
    created_at: i64,
}

async fn load(pool: &SqlitePool, project_id: i64) -> Result<(Vec<Stored>, Bodies)> {
    let rows = sqlx::query!(
        r#"SELECT r.id AS "id!", r.tiers_json, r.unacceptable_json, r.created_at,
                  a.shown_json, a.item_id, i.prompt_json, u.name
           FROM rankings r
           JOIN assignments a ON a.id = r.assignment_id
           JOIN items i ON i.id = a.item_id
           JOIN users u ON u.id = a.user_id
           WHERE a.project_id = ? AND r.undone_at IS NULL
           ORDER BY r.id"#,
        project_id
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(Stored {
            id: r.id,
            labeler: r.name,
            item_id: r.item_id,
            prompt: serde_json::from_str(&r.prompt_json)?,
            shown: serde_json::from_str(r.shown_json.as_deref().unwrap_or("[]"))?,
            tiers: serde_json::from_str(&r.tiers_json)?,
            unacceptable: serde_json::from_str(&r.unacceptable_json)?,
            created_at: r.created_at,
        });
    }
    let bodies = sqlx::query!(
        r#"SELECT r.item_id, r.idx, r.body FROM responses r JOIN items i ON i.id = r.item_id
           WHERE i.project_id = ?"#,
        project_id
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|b| ((b.item_id, b.idx), b.body))
    .collect();
    Ok((out, bodies))
}

type Bodies = HashMap<(i64, i64), String>;

fn body(bodies: &Bodies, item: i64, idx: i64) -> Result<&str> {
    bodies
        .get(&(item, idx))
        .map(String::as_str)
        .ok_or_else(|| AppError::Internal(format!("item {item} has no response {idx}")))
}

/// The rows of a ranking project's export.
pub async fn ranking_rows(
    pool: &SqlitePool,
    project_id: i64,
    opts: ExportOptions,
) -> Result<Vec<Value>> {
    let (rankings, bodies) = load(pool, project_id).await?;
    let mut out = Vec::new();
    for r in &rankings {
        if opts.raw {
            out.push(raw_row(r, &bodies)?);
        } else {
            pair_rows(r, &bodies, opts, &mut out)?;
        }
    }
    Ok(out)
}

fn pair_rows(r: &Stored, bodies: &Bodies, opts: ExportOptions, out: &mut Vec<Value>) -> Result<()> {
    let mut pairs = expand(&r.tiers);
    if let Some(max) = opts.max_pairs_per_ranking {
        pairs = cap(pairs, max, r.id as u64);
    }
    let span = r.shown.len().saturating_sub(1).max(1) as f64;
    for p in pairs {
        let mut row = json!({
            "prompt": r.prompt,
            "chosen": completion(&r.prompt, body(bodies, r.item_id, p.chosen)?),
            "rejected": completion(&r.prompt, body(bodies, r.item_id, p.rejected)?),
            "rank_gap": p.rank_gap,
            "group": r.id,
            "labeler": r.labeler,
        });
        if opts.ties == Ties::Margin {
            // The gap as a share of the widest possible one (K - 1), so margins are in (0, 1].
            row["margin"] = json!(p.rank_gap as f64 / span);
        }
        out.push(row);
    }
    Ok(())
}

/// The ranking as stored, with `tiers`/`unacceptable` as positions into `responses`, which are
/// listed in the order the labeler saw them (`response_idx`: their import order).
fn raw_row(r: &Stored, bodies: &Bodies) -> Result<Value> {
    let pos = |idx: &i64| -> Result<usize> {
        r.shown.iter().position(|s| s == idx).ok_or_else(|| {
            AppError::Internal(format!("ranking {} ranks an unshown response", r.id))
        })
    };
    let tiers = r
        .tiers
        .iter()
        .map(|t| t.iter().map(pos).collect::<Result<Vec<_>>>())
        .collect::<Result<Vec<_>>>()?;
    let bad = r.unacceptable.iter().map(pos).collect::<Result<Vec<_>>>()?;
    let responses = r
        .shown
        .iter()
        .map(|&i| body(bodies, r.item_id, i))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({
        "ranking_id": r.id, "labeler": r.labeler, "item_id": r.item_id, "prompt": r.prompt,
        "responses": responses, "response_idx": r.shown, "tiers": tiers, "unacceptable": bad,
        "created_at": r.created_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(tiers: &[Vec<i64>]) -> Vec<(i64, i64, usize)> {
        expand(tiers)
            .into_iter()
            .map(|p| (p.chosen, p.rejected, p.rank_gap))
            .collect()
    }

    #[test]
    fn strict_ranking_gives_all_k_choose_2_pairs() {
        // 2 > 0 > 3 > 1: six pairs, gaps by tier distance.
        let got = pairs(&[vec![2], vec![0], vec![3], vec![1]]);
        let want = vec![
            (2, 0, 1),
            (2, 3, 2),
            (2, 1, 3),
            (0, 3, 1),
            (0, 1, 2),
            (3, 1, 1),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn ties_give_no_pair_and_unacceptable_tiers_lose_to_all() {
        // 1 > (0 = 3) > 2, with 2 flagged unacceptable (stored as the last tier). The tie 0 = 3
        // yields nothing: 2 + 2 + 1 = 5 pairs instead of 6.
        let got = pairs(&[vec![1], vec![0, 3], vec![2]]);
        let want = vec![(1, 0, 1), (1, 3, 1), (1, 2, 2), (0, 2, 1), (3, 2, 1)];
        assert_eq!(got, want);
        // Two unacceptable responses tied at the bottom, 4 > 0 acceptable: the bottom tie gives
        // no pair, each acceptable one beats both.
        let got = pairs(&[vec![4], vec![0], vec![1, 2]]);
        let want = vec![(4, 0, 1), (4, 1, 2), (4, 2, 2), (0, 1, 1), (0, 2, 1)];
        assert_eq!(got, want);
        assert_eq!(pairs(&[vec![0, 1, 2]]), vec![], "all tied: nothing");
    }

    #[test]
    fn cap_is_a_seeded_subset_in_order() {
        let all = expand(&[vec![0], vec![1], vec![2], vec![3], vec![4]]);
        assert_eq!(all.len(), 10);
        let a = cap(all.clone(), 4, 7);
        assert_eq!(a.len(), 4);
        assert_eq!(a, cap(all.clone(), 4, 7), "same seed, same pairs");
        let pos: Vec<usize> = a
            .iter()
            .map(|p| all.iter().position(|q| q == p).expect("subset"))
            .collect();
        assert!(
            pos.windows(2).all(|w| w[0] < w[1]),
            "kept in order: {pos:?}"
        );
        assert_ne!(
            (0..20)
                .map(|s| cap(all.clone(), 4, s))
                .collect::<std::collections::HashSet<_>>()
                .len(),
            1,
            "different rankings keep different pairs"
        );
        assert_eq!(cap(all.clone(), 99, 1), all);
    }
}
