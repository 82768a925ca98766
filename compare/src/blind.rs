//! Blind human evaluation through the labeling app. `push_to_labeling` imports, per prompt and
//! sample, the base answer and one other model's answer as an ordinary two-response item (the
//! page randomises A/B per assignment, so labelers cannot tell which model is which), and
//! records which model wrote which response in the side table `compare_pairs` (schema in
//! `migrations/`; the labeling app never reads it).
//! `win_rates` reads the live labels back: each label is one trial for the non-base model.
use crate::error::{Error, Result};
use crate::run::Sample;
use crate::stats::{wilson, Estimate};
use labeling_ui::{ImportItem, Prompt};
use serde::Serialize;
use sqlx::{Row, SqlitePool};

/// Imports base-vs-model pairs into `project` (which must exist); returns the item count.
/// The first model in `samples` order is the base; identical answers are skipped (nothing to
/// judge). The items and their model tags are written in one transaction, so a failure leaves
/// neither, and the tags go to the ids the import returns (no matching by content).
pub async fn push_to_labeling(
    pool: &SqlitePool,
    project: &str,
    samples: &[Sample],
) -> Result<usize> {
    let (items, tags) = base_pairs(samples)?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let report = labeling_ui::import_items_in(&mut tx, project, items).await?;
    for (item_id, (grp, first, second)) in report.item_ids.iter().zip(&tags) {
        sqlx::query(
            "INSERT INTO compare_pairs (item_id, grp, first_model, second_model) VALUES (?, ?, ?, ?)",
        )
        .bind(item_id)
        .bind(grp)
        .bind(first)
        .bind(second)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(report.items)
}

/// The two-response items (base answer first) and their (group, base, model) tags.
type Pairs = (Vec<ImportItem>, Vec<(String, String, String)>);

fn base_pairs(samples: &[Sample]) -> Result<Pairs> {
    let base = samples
        .first()
        .map(|s| s.model.clone())
        .ok_or_else(|| Error::Invalid("no samples".into()))?;
    let (mut items, mut tags) = (vec![], vec![]);
    for other in samples.iter().filter(|s| s.model != base) {
        let Some(b) = samples.iter().find(|s| {
            s.model == base && s.prompt_id == other.prompt_id && s.sample == other.sample
        }) else {
            continue;
        };
        if b.completion == other.completion {
            continue;
        }
        let prompt: Prompt = serde_json::from_value(serde_json::to_value(&other.prompt)?)?;
        items.push(ImportItem {
            prompt,
            responses: vec![b.completion.clone(), other.completion.clone()],
        });
        tags.push((other.group.clone(), base.clone(), other.model.clone()));
    }
    if items.is_empty() {
        return Err(Error::Invalid(
            "no pairs to label: every answer equals the base's".into(),
        ));
    }
    Ok((items, tags))
}

/// Label counts for one model against the base (one label = one trial).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub wins: usize,
    pub losses: usize,
    /// "tie" and "both bad".
    pub ties: usize,
}

impl Tally {
    pub fn n(&self) -> usize {
        self.wins + self.losses + self.ties
    }
}

/// Win and tie rates with Wilson 95% intervals.
#[derive(Debug, Clone, Serialize)]
pub struct WinRate {
    pub model: String,
    pub base: String,
    /// None for the overall row.
    pub group: Option<String>,
    pub tally: Tally,
    pub win_rate: Option<Estimate>,
    pub tie_rate: Option<Estimate>,
    pub loss_rate: Option<Estimate>,
}

impl WinRate {
    pub fn from_tally(model: &str, base: &str, group: Option<&str>, t: Tally) -> Self {
        WinRate {
            model: model.into(),
            base: base.into(),
            group: group.map(Into::into),
            tally: t,
            win_rate: wilson(t.wins, t.n()),
            tie_rate: wilson(t.ties, t.n()),
            loss_rate: wilson(t.losses, t.n()),
        }
    }
}

/// Adds one label (`first`/`second`/`tie`/`both_bad`, canonical terms) to the tally of the
/// model that wrote `second` (the first response is always the base's).
pub fn count(t: &mut Tally, choice: &str) {
    match choice {
        "second" => t.wins += 1,
        "first" => t.losses += 1,
        _ => t.ties += 1,
    }
}

/// Per (model, group) and per model overall, over the project's live labels.
pub async fn win_rates(pool: &SqlitePool, project: &str) -> Result<Vec<WinRate>> {
    let project_id = project_id(pool, project).await?;
    let rows = sqlx::query(
        "SELECT t.first_model, t.second_model, t.grp, l.choice FROM labels l
         JOIN assignments a ON a.id = l.assignment_id
         JOIN compare_pairs t ON t.item_id = a.item_id
         WHERE a.project_id = ? AND l.undone_at IS NULL
         ORDER BY t.second_model, t.grp",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    let mut groups: Vec<((String, String, String), Tally)> = vec![];
    for r in &rows {
        let key = (
            r.get::<String, _>(0),
            r.get::<String, _>(1),
            r.get::<String, _>(2),
        );
        let i = match groups.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                groups.push((key, Tally::default()));
                groups.len() - 1
            }
        };
        count(&mut groups[i].1, &r.get::<String, _>(3));
    }
    Ok(summarise(&groups))
}

/// Per-group rows followed by one overall row per model.
pub fn summarise(groups: &[((String, String, String), Tally)]) -> Vec<WinRate> {
    let mut out = vec![];
    let mut models: Vec<(String, String)> = vec![];
    for ((base, model, g), t) in groups {
        out.push(WinRate::from_tally(model, base, Some(g), *t));
        if !models.contains(&(base.clone(), model.clone())) {
            models.push((base.clone(), model.clone()));
        }
    }
    for (base, model) in models {
        let mut all = Tally::default();
        for ((b, m, _), t) in groups
            .iter()
            .filter(|((b, m, _), _)| *b == base && *m == model)
        {
            let _ = (b, m);
            all.wins += t.wins;
            all.losses += t.losses;
            all.ties += t.ties;
        }
        out.push(WinRate::from_tally(&model, &base, None, all));
    }
    out
}

/// Comparisons of `project` with at least one live label, and all its comparisons.
pub async fn label_progress(pool: &SqlitePool, project: &str) -> Result<(i64, i64)> {
    let project_id = project_id(pool, project).await?;
    let total: i64 = sqlx::query("SELECT COUNT(*) FROM comparisons WHERE project_id = ?")
        .bind(project_id)
        .fetch_one(pool)
        .await?
        .get(0);
    let labeled: i64 = sqlx::query(
        "SELECT COUNT(DISTINCT a.comparison_id) FROM assignments a
         JOIN labels l ON l.assignment_id = a.id
         WHERE a.project_id = ? AND l.undone_at IS NULL AND a.comparison_id IS NOT NULL",
    )
    .bind(project_id)
    .fetch_one(pool)
    .await?
    .get(0);
    Ok((labeled, total))
}

/// Id of a project by name.
pub async fn project_id(pool: &SqlitePool, project: &str) -> Result<i64> {
    match labeling_ui::db::project_info(pool, project).await {
        Ok(info) => Ok(info.id),
        Err(labeling_ui::AppError::NotFound(_)) => Err(Error::Invalid(format!(
            "labeling project `{project}` does not exist (create it with `rudder label \
             create-project {project}`, or let `rudder compare --to-labeling` do it)"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Creates a pairwise project unless it exists.
pub async fn ensure_project(pool: &SqlitePool, project: &str) -> Result<()> {
    match labeling_ui::db::project_info(pool, project).await {
        Ok(_) => Ok(()),
        Err(labeling_ui::AppError::NotFound(_)) => {
            labeling_ui::create_project(pool, project, 1).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
