//! The labeling stages of `rudder pipeline`: `[candidates]` samples responses into the labeling
//! app (`rudder label generate`, same field names), and `labels` waits until enough
//! comparisons are labeled, then exports them as preference pairs.
use crate::pipeline::Preferences;
use crate::pipeline_stages::{stage_done, stage_mark, Ctx};
use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::PathBuf;

/// `rudder label` parsed from argv built out of a TOML section.
#[derive(Parser)]
#[command(name = "label")]
struct LabelArgv {
    #[command(flatten)]
    cli: crate::label::LabelCli,
}

/// `--key value` flags from a TOML table (`_` → `-`); `true` is a bare flag, arrays repeat.
pub fn argv(stage: &str, file: &str, t: &toml::Table) -> Result<Vec<String>> {
    let mut out = vec![];
    for (k, v) in t {
        let flag = format!("--{}", k.replace('_', "-"));
        let one = |v: &toml::Value| -> Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                _ => bail!("{file}: [{stage}] field `{k}`: expected a string or a number"),
            })
        };
        match v {
            toml::Value::Boolean(true) => out.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(a) => a.iter().try_for_each(|x| {
                out.extend([flag.clone(), one(x)?]);
                anyhow::Ok(())
            })?,
            v => out.extend([flag, one(v)?]),
        }
    }
    Ok(out)
}

fn get(t: &toml::Table, k: &str) -> String {
    t.get(k)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

pub fn candidates(ctx: &Ctx, t: &toml::Table) -> Result<()> {
    if stage_done(ctx, "candidates", t)? {
        return Ok(());
    }
    println!("pipeline: [candidates] running");
    let mut args = vec!["label".to_string(), "generate".to_string()];
    args.extend(argv("candidates", &ctx.file, t)?);
    if let Some(d) = &ctx.device.device {
        args.extend(["--device".into(), d.clone()]);
    }
    let parsed = LabelArgv::try_parse_from(&args).map_err(|e| {
        let msg = e.to_string();
        let first = msg
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string();
        anyhow::anyhow!(
            "{}: [candidates] {first} (fields are `rudder label generate` flags with `_`)",
            ctx.file
        )
    })?;
    let (db, project) = (get(t, "db"), get(t, "project"));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let pool = labeling_ui::db::open(&db).await?;
        anyhow::Ok(compare::blind::ensure_project(&pool, &project).await?)
    })?;
    crate::label::run(parsed.cli).with_context(|| format!("{}: stage [candidates]", ctx.file))?;
    std::fs::create_dir_all(ctx.out.join("candidates"))?;
    stage_mark(ctx, "candidates", t, &db)
}

/// Exports the labels once enough are in; None (after printing what to do) when not yet.
pub fn labels(ctx: &Ctx, cand: &toml::Table, prefs: &Preferences) -> Result<Option<PathBuf>> {
    let (db, project) = (get(cand, "db"), get(cand, "project"));
    let ties = prefs.ties.clone().unwrap_or_else(|| "drop".into());
    let mut t = toml::Table::new();
    t.insert("db".into(), toml::Value::String(db.clone()));
    t.insert("project".into(), toml::Value::String(project.clone()));
    t.insert("ties".into(), toml::Value::String(ties.clone()));
    let dir = ctx.out.join("labels");
    let file = dir.join("prefs.jsonl");
    if stage_done(ctx, "labels", &t)? {
        return Ok(Some(file));
    }
    let opts: labeling_ui::ExportOptions =
        serde_json::from_value(serde_json::json!({ "ties": ties })).map_err(|_| {
            anyhow::anyhow!(
                "{}: [preferences] field `ties`: `{ties}` is not one of drop, margin",
                ctx.file
            )
        })?;
    let rt = tokio::runtime::Runtime::new()?;
    let pool = rt.block_on(labeling_ui::db::open(&db))?;
    let (labeled, total) = rt.block_on(compare::blind::label_progress(&pool, &project))?;
    let need = prefs.min_labeled.unwrap_or(total).min(total);
    if labeled < need {
        let url = prefs
            .url
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let addr = url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        println!(
            "pipeline: stopped at [labels]: {labeled} of {total} comparisons labeled in project `{project}` (need {need}).\n  \
             1. rudder label serve --db {db} --addr {addr}\n  \
             2. rudder label add-user NAME --role labeler --db {db}   (once per labeler)\n  \
             3. open {url} and label; then run `rudder pipeline --config {}` again",
            ctx.file
        );
        return Ok(None);
    }
    let (text, rows) = rt.block_on(labeling_ui::export_jsonl(&pool, &project, opts))?;
    if rows == 0 {
        bail!(
            "{}: [labels] project `{project}`: the labels give no preference pairs (all ties?)",
            ctx.file
        );
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    println!(
        "pipeline: [labels] exported {rows} preference pairs to {}",
        file.display()
    );
    stage_mark(ctx, "labels", &t, &file.display().to_string())?;
    Ok(Some(file))
}
