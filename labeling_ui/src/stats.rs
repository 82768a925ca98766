//! Admin dashboard numbers: progress per labeler and agreement on overlapping comparisons.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::SqlitePool;

use crate::agreement::{
    cohen_kappa, kendall_tau_b, krippendorff_alpha, krippendorff_alpha_ordinal,
};
use crate::db::{project_info, Mode};
use crate::error::Result;

#[derive(Debug, Serialize)]
pub struct LabelerStats {
    pub name: String,
    pub labeled: i64,
    pub assigned: i64,
}

#[derive(Debug, Serialize)]
pub struct PairKappa {
    pub a: String,
    pub b: String,
    /// Comparisons both labeled.
    pub n: usize,
    pub kappa: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct PairTau {
    pub a: String,
    pub b: String,
    /// Items both ranked where tau is defined.
    pub n: usize,
    /// Kendall's tau-b over the responses both saw, averaged over those items.
    pub tau: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ProjectStats {
    pub project: String,
    pub mode: Mode,
    pub overlap: i64,
    /// Units to label: comparisons (pairwise) or items (ranking).
    pub comparisons: i64,
    /// Live labels (ranking mode: live rankings).
    pub labels: usize,
    /// Comparisons (ranking mode: items) with at least `overlap` live labels.
    pub complete: usize,
    pub labelers: Vec<LabelerStats>,
    pub kappa: Vec<PairKappa>,
    /// Krippendorff's alpha (nominal) over comparisons with two or more labels.
    pub alpha: Option<f64>,
    pub alpha_units: usize,
    /// Ranking mode: Kendall's tau-b per labeler pair on the items both ranked.
    pub kendall: Vec<PairTau>,
    /// Ranking mode: Krippendorff's alpha (ordinal) whose units are responses ranked by two or
    /// more labelers, valued by their rank position (ties share the mean position).
    pub alpha_ordinal: Option<f64>,
    pub alpha_ordinal_units: usize,
}

pub async fn project_stats(pool: &SqlitePool, project: &str) -> Result<ProjectStats> {
    let info = project_info(pool, project).await?;
    let (project_id, overlap) = (info.id, info.overlap);
    let comparisons = sqlx::query_scalar!(
        "SELECT n_comparisons FROM projects WHERE id = ?",
        project_id
    )
    .fetch_one(pool)
    .await?;
    let labelers = sqlx::query_as!(
        LabelerStats,
        r#"SELECT u.name, SUM(a.done) AS "labeled!: i64", COUNT(*) AS "assigned!: i64"
           FROM assignments a JOIN users u ON u.id = a.user_id
           WHERE a.project_id = ? GROUP BY u.id ORDER BY u.name"#,
        project_id
    )
    .fetch_all(pool)
    .await?;
    let mut stats = ProjectStats {
        project: project.to_owned(),
        mode: info.mode,
        overlap,
        comparisons,
        labels: 0,
        complete: 0,
        labelers,
        kappa: vec![],
        alpha: None,
        alpha_units: 0,
        kendall: vec![],
        alpha_ordinal: None,
        alpha_ordinal_units: 0,
    };
    match info.mode {
        Mode::Pairwise => pairwise_stats(pool, &mut stats, project_id).await?,
        Mode::Ranking => ranking_stats(pool, &mut stats, project_id).await?,
    }
    Ok(stats)
}

async fn pairwise_stats(
    pool: &SqlitePool,
    stats: &mut ProjectStats,
    project_id: i64,
) -> Result<()> {
    let rows = sqlx::query!(
        r#"SELECT a.comparison_id AS "comparison_id!", u.name, l.choice
           FROM labels l JOIN assignments a ON a.id = l.assignment_id JOIN users u ON u.id = a.user_id
           WHERE a.project_id = ? AND l.undone_at IS NULL ORDER BY a.comparison_id"#,
        project_id
    )
    .fetch_all(pool)
    .await?;
    stats.labels = rows.len();
    let mut by_cmp: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    for r in rows {
        by_cmp
            .entry(r.comparison_id)
            .or_default()
            .insert(r.name, r.choice);
    }
    stats.complete = by_cmp
        .values()
        .filter(|m| m.len() as i64 >= stats.overlap)
        .count();
    let units: Vec<Vec<String>> = by_cmp
        .values()
        .map(|m| m.values().cloned().collect())
        .collect();
    stats.alpha_units = units.iter().filter(|u| u.len() >= 2).count();
    stats.kappa = pair_kappas(&stats.labelers, &by_cmp);
    stats.alpha = krippendorff_alpha(&units);
    Ok(())
}

/// Rank position of each response (`responses.idx`) in a ranking, doubled so ties (which share
/// the mean of their positions) stay integers: tiers `[[2], [0, 3], [1]]` give 2 -> 2,
/// 0 and 3 -> 5 (positions 2 and 3), 1 -> 8.
pub fn rank_positions(tiers: &[Vec<i64>]) -> BTreeMap<i64, i64> {
    let (mut out, mut start) = (BTreeMap::new(), 1i64);
    for tier in tiers {
        let size = tier.len() as i64;
        for &idx in tier {
            out.insert(idx, 2 * start + size - 1);
        }
        start += size;
    }
    out
}

/// Item -> labeler -> response -> doubled rank position.
type ByItem = BTreeMap<i64, BTreeMap<String, BTreeMap<i64, i64>>>;

async fn ranking_stats(pool: &SqlitePool, stats: &mut ProjectStats, project_id: i64) -> Result<()> {
    let rows = sqlx::query!(
        r#"SELECT a.item_id, u.name, r.tiers_json
           FROM rankings r JOIN assignments a ON a.id = r.assignment_id JOIN users u ON u.id = a.user_id
           WHERE a.project_id = ? AND r.undone_at IS NULL"#,
        project_id
    )
    .fetch_all(pool)
    .await?;
    stats.labels = rows.len();
    let mut by_item: ByItem = BTreeMap::new();
    for r in rows {
        let tiers: Vec<Vec<i64>> = serde_json::from_str(&r.tiers_json)?;
        by_item
            .entry(r.item_id)
            .or_default()
            .insert(r.name, rank_positions(&tiers));
    }
    stats.complete = by_item
        .values()
        .filter(|m| m.len() as i64 >= stats.overlap)
        .count();
    let mut units: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
    for (item, by_labeler) in &by_item {
        for ranks in by_labeler.values() {
            for (idx, pos) in ranks {
                units.entry((*item, *idx)).or_default().push(*pos);
            }
        }
    }
    let units: Vec<Vec<i64>> = units.into_values().collect();
    stats.alpha_ordinal_units = units.iter().filter(|u| u.len() >= 2).count();
    stats.alpha_ordinal = krippendorff_alpha_ordinal(&units);
    stats.kendall = pair_taus(&stats.labelers, &by_item);
    Ok(())
}

fn pair_taus(labelers: &[LabelerStats], by_item: &ByItem) -> Vec<PairTau> {
    let mut out = Vec::new();
    for (i, a) in labelers.iter().enumerate() {
        for b in &labelers[i + 1..] {
            let taus: Vec<f64> = by_item
                .values()
                .filter_map(|m| {
                    let (ra, rb) = (m.get(&a.name)?, m.get(&b.name)?);
                    // Only the responses both saw (a K-subset each when items have more).
                    let common: Vec<(i64, i64)> = ra
                        .iter()
                        .filter_map(|(idx, pa)| Some((*pa, *rb.get(idx)?)))
                        .collect();
                    let (x, y): (Vec<i64>, Vec<i64>) = common.into_iter().unzip();
                    kendall_tau_b(&x, &y)
                })
                .collect();
            let both = by_item
                .values()
                .filter(|m| m.contains_key(&a.name) && m.contains_key(&b.name))
                .count();
            if both == 0 {
                continue;
            }
            out.push(PairTau {
                a: a.name.clone(),
                b: b.name.clone(),
                n: taus.len(),
                tau: (!taus.is_empty()).then(|| taus.iter().sum::<f64>() / taus.len() as f64),
            });
        }
    }
    out
}

fn pair_kappas(
    labelers: &[LabelerStats],
    by_cmp: &BTreeMap<i64, BTreeMap<String, String>>,
) -> Vec<PairKappa> {
    let mut out = Vec::new();
    for (i, a) in labelers.iter().enumerate() {
        for b in &labelers[i + 1..] {
            let pairs: Vec<(&String, &String)> = by_cmp
                .values()
                .filter_map(|m| Some((m.get(&a.name)?, m.get(&b.name)?)))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            out.push(PairKappa {
                a: a.name.clone(),
                b: b.name.clone(),
                n: pairs.len(),
                kappa: cohen_kappa(&pairs),
            });
        }
    }
    out
}

/// One row of the project list.
#[derive(Debug, Serialize)]
pub struct ProjectSummary {
    pub name: String,
    /// `pairwise` or `ranking`.
    pub mode: String,
    /// Responses per ranking (ranking mode).
    pub k: Option<i64>,
    pub overlap: i64,
    pub comparisons: i64,
    /// Live labels: everyone's for admins, the caller's own for labelers.
    pub labeled: i64,
}

/// Projects with label counts; `user_id = None` counts everyone's labels (admin view).
pub async fn list_projects(pool: &SqlitePool, user_id: Option<i64>) -> Result<Vec<ProjectSummary>> {
    Ok(sqlx::query_as!(
        ProjectSummary,
        r#"SELECT p.name, p.mode, p.k, p.overlap,
             p.n_comparisons AS comparisons,
             (SELECT COUNT(*) FROM assignments a WHERE a.project_id = p.id AND a.done = 1
                AND (?1 IS NULL OR a.user_id = ?1)) AS "labeled!: i64"
           FROM projects p ORDER BY p.name"#,
        user_id
    )
    .fetch_all(pool)
    .await?)
}
