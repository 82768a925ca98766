//! Where the preferences come from: a file, or candidates sampled into the labeling app and,
//! once enough are labeled, exported as preference pairs.
use crate::candidates::{generate_candidates, CandidateSettings};
use crate::stages::{p, s, section, stage_done, stage_mark, Ctx};
use crate::{Error, PipelineConfig, Preferences, Result};
use std::path::PathBuf;
use std::time::Instant;

/// The preference pairs: `[preferences] file`, or candidates sampled into the labeling app
/// and, once labeled, exported. None: stopped, waiting for labels (the lines said where).
pub fn preferences(ctx: &Ctx, cfg: &PipelineConfig, model: &str) -> Result<Option<PathBuf>> {
    let prefs = cfg.preferences.as_ref();
    if let Some(f) = prefs.and_then(|p| p.file.clone()) {
        if cfg.candidates.is_some() {
            return Err(ctx.config("[preferences] field `file`: give either a preference file or a [candidates] section, not both"));
        }
        if !f.exists() {
            let reason = format!("[preferences] field `file`: {} does not exist", f.display());
            return Err(ctx.config(reason));
        }
        return Ok(Some(f));
    }
    let Some(cand) = &cfg.candidates else {
        return Err(ctx.config("preferences needed: set [preferences] file = \"prefs.jsonl\", or add a [candidates] section to label candidates in the browser"));
    };
    let db = ctx.out.join("labels.sqlite");
    let defaults = [
        ("model", s(model)),
        ("db", p(&db)),
        ("project", s("pipeline")),
    ];
    let t = section(ctx, "candidates", Some(cand), &defaults)?;
    candidates(ctx, &t)?;
    labels(ctx, &t, prefs.unwrap_or(&Preferences::default()))
}

/// `[candidates]`: `rudder label generate`'s settings; the project is created if missing.
fn candidates(ctx: &Ctx, t: &toml::Table) -> Result<()> {
    if stage_done(ctx, "candidates", t)? {
        return Ok(());
    }
    let started = Instant::now();
    let settings = candidate_settings(ctx, t)?;
    (ctx.say)("pipeline: [candidates] running");
    let (db, project) = (get(t, "db"), get(t, "project"));
    let rt = tokio::runtime::Runtime::new().map_err(Error::io("tokio runtime"))?;
    rt.block_on(async {
        let pool = labeling_ui::db::open(&db).await?;
        compare::blind::ensure_project(&pool, &project).await
    })?;
    let failed = |e: Error| Error::Stage {
        file: ctx.file.clone(),
        stage: "candidates".into(),
        source: Box::new(e),
    };
    let report = generate_candidates(&settings, &ctx.load).map_err(failed)?;
    (ctx.say)(&format!(
        "imported {} items ({} comparisons, {} to rank) into `{project}`",
        report.items, report.comparisons, report.rankings
    ));
    let dir = ctx.out.join("candidates");
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    stage_mark(ctx, "candidates", t, &db, started)
}

/// `[candidates]` as `rudder label generate`'s settings.
pub fn candidate_settings(ctx: &Ctx, t: &toml::Table) -> Result<CandidateSettings> {
    t.clone().try_into().map_err(|e: toml::de::Error| {
        ctx.config(format!(
            "[candidates] {} (fields are `rudder label generate` flags with `_`)",
            e.message()
        ))
    })
}

fn get(t: &toml::Table, k: &str) -> String {
    t.get(k)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Exports the labels once enough are in; None (after saying what to do) when not yet.
fn labels(ctx: &Ctx, cand: &toml::Table, prefs: &Preferences) -> Result<Option<PathBuf>> {
    let (db, project) = (get(cand, "db"), get(cand, "project"));
    let ties = prefs.ties.clone().unwrap_or_else(|| "drop".into());
    let mut t = toml::Table::new();
    t.insert("db".into(), s(&db));
    t.insert("project".into(), s(&project));
    t.insert("ties".into(), s(&ties));
    let dir = ctx.out.join("labels");
    let file = dir.join("prefs.jsonl");
    if stage_done(ctx, "labels", &t)? {
        return Ok(Some(file));
    }
    let started = Instant::now();
    let opts: labeling_ui::ExportOptions =
        serde_json::from_value(serde_json::json!({ "ties": ties })).map_err(|_| {
            ctx.config(format!(
                "[preferences] field `ties`: `{ties}` is not one of drop, margin"
            ))
        })?;
    let rt = tokio::runtime::Runtime::new().map_err(Error::io("tokio runtime"))?;
    let pool = rt.block_on(labeling_ui::db::open(&db))?;
    let (labeled, total) = rt.block_on(compare::blind::label_progress(&pool, &project))?;
    let need = prefs.min_labeled.unwrap_or(total).min(total);
    if labeled < need {
        let url = prefs.url.as_deref().unwrap_or("http://127.0.0.1:8080");
        let addr = url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        (ctx.say)(&format!(
            "pipeline: stopped at [labels]: {labeled} of {total} comparisons labeled in project `{project}` (need {need}).\n  \
             1. rudder label serve --db {db} --addr {addr}\n  \
             2. rudder label add-user NAME --role labeler --db {db}   (once per labeler)\n  \
             3. open {url} and label; then run `rudder pipeline --config {}` again",
            ctx.file
        ));
        return Ok(None);
    }
    let (text, rows) = rt.block_on(labeling_ui::export_jsonl(&pool, &project, opts))?;
    if rows == 0 {
        return Err(ctx.config(format!(
            "[labels] project `{project}`: the labels give no preference pairs (all ties?)"
        )));
    }
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    std::fs::write(&file, text).map_err(Error::io(&file))?;
    (ctx.say)(&format!(
        "pipeline: [labels] exported {rows} preference pairs to {}",
        file.display()
    ));
    stage_mark(ctx, "labels", &t, &file.display().to_string(), started)?;
    Ok(Some(file))
}
