//! Admin dashboard numbers: progress per labeler and agreement on overlapping comparisons.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::SqlitePool;

use crate::agreement::{cohen_kappa, krippendorff_alpha};
use crate::db::project_by_name;
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
pub struct ProjectStats {
    pub project: String,
    pub overlap: i64,
    pub comparisons: i64,
    pub labels: usize,
    /// Comparisons with at least `overlap` live labels.
    pub complete: usize,
    pub labelers: Vec<LabelerStats>,
    pub kappa: Vec<PairKappa>,
    /// Krippendorff's alpha (nominal) over comparisons with two or more labels.
    pub alpha: Option<f64>,
    pub alpha_units: usize,
}

pub async fn project_stats(pool: &SqlitePool, project: &str) -> Result<ProjectStats> {
    let (project_id, overlap) = project_by_name(pool, project).await?;
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
    let rows = sqlx::query!(
        r#"SELECT a.comparison_id AS "comparison_id!", u.name, l.choice
           FROM labels l JOIN assignments a ON a.id = l.assignment_id JOIN users u ON u.id = a.user_id
           WHERE a.project_id = ? AND l.undone_at IS NULL ORDER BY a.comparison_id"#,
        project_id
    )
    .fetch_all(pool)
    .await?;
    let labels = rows.len();
    let mut by_cmp: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    for r in rows {
        by_cmp
            .entry(r.comparison_id)
            .or_default()
            .insert(r.name, r.choice);
    }
    let complete = by_cmp
        .values()
        .filter(|m| m.len() as i64 >= overlap)
        .count();
    let units: Vec<Vec<String>> = by_cmp
        .values()
        .map(|m| m.values().cloned().collect())
        .collect();
    let alpha_units = units.iter().filter(|u| u.len() >= 2).count();
    Ok(ProjectStats {
        project: project.to_owned(),
        overlap,
        comparisons,
        labels,
        complete,
        kappa: pair_kappas(&labelers, &by_cmp),
        labelers,
        alpha: krippendorff_alpha(&units),
        alpha_units,
    })
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
    pub overlap: i64,
    pub comparisons: i64,
    /// Live labels: everyone's for admins, the caller's own for labelers.
    pub labeled: i64,
}

/// Projects with label counts; `user_id = None` counts everyone's labels (admin view).
pub async fn list_projects(pool: &SqlitePool, user_id: Option<i64>) -> Result<Vec<ProjectSummary>> {
    Ok(sqlx::query_as!(
        ProjectSummary,
        r#"SELECT p.name, p.overlap,
             p.n_comparisons AS comparisons,
             (SELECT COUNT(*) FROM assignments a WHERE a.project_id = p.id AND a.done = 1
                AND (?1 IS NULL OR a.user_id = ?1)) AS "labeled!: i64"
           FROM projects p ORDER BY p.name"#,
        user_id
    )
    .fetch_all(pool)
    .await?)
}
