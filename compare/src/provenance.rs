//! How a compared model (or the reward model) was made. Every Rudder stage writes
//! `<stage>_run.json` into its run folder: the loop's settings, the stage's and what the run
//! produced (`train::write_record`); a LoRA adapter merged for later stages sits in that
//! folder's `merged/`. The report shows one line per model from it, with a link to the folder,
//! so that a reader sees what each model is (an 8-step demo or a real run) next to its numbers.
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The stages that write a record, by the name of their record file.
const STAGES: [&str; 4] = ["sft", "reward", "dpo", "ppo"];

/// What the record of a model's run says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    /// The run folder holding `<stage>_run.json` (absolute when it could be resolved).
    pub folder: PathBuf,
    /// Stage, steps, rows and the key settings, e.g. `dpo: 32 steps on 128 pairs of
    /// examples/pipeline/prefs.jsonl; batch 4, lr 1e-5, full, loss sigmoid, beta 0.1`.
    pub line: String,
}

/// The record of the run that made `spec` (a model folder), or `None` for anything else: a hub
/// id, a GGUF file, a folder no Rudder stage wrote, or a record that cannot be read.
pub fn of(spec: &str) -> Option<Provenance> {
    let dir = Path::new(spec);
    let mut folders = vec![dir];
    if dir.file_name().is_some_and(|n| n == "merged") {
        folders.extend(dir.parent());
    }
    for folder in folders {
        for stage in STAGES {
            let text = std::fs::read_to_string(folder.join(format!("{stage}_run.json")));
            let Ok(record) = text.map(|t| serde_json::from_str::<Value>(&t)) else {
                continue;
            };
            let Ok(record) = record else { continue };
            return Some(Provenance {
                folder: folder
                    .canonicalize()
                    .unwrap_or_else(|_| folder.to_path_buf()),
                line: describe(stage, &record),
            });
        }
    }
    None
}

/// One line from a run record: `stage: N steps on R rows of DATA; batch B, lr L, full|LoRA r;
/// the stage's own key settings`.
pub fn describe(stage: &str, record: &Value) -> String {
    let (trainer, cfg, outcome) = (&record["trainer"], &record[stage], &record["outcome"]);
    let steps = outcome["summary"]["steps"].as_u64().unwrap_or(0);
    let mut line = format!("{stage}: {steps} steps");
    if let Some(rows) = rows(outcome) {
        line += &format!(" on {rows}");
    }
    if let Some(data) = cfg["data"].as_str().or(cfg["prompts"].as_str()) {
        line += &format!(" of {data}");
    }
    let mut settings = vec![];
    if let Some(b) = trainer["batch_size"].as_u64() {
        settings.push(format!("batch {b}"));
    }
    if let Some(lr) = trainer["learning_rate"].as_f64() {
        settings.push(format!("lr {lr:e}"));
    }
    settings.push(match cfg["lora_r"].as_u64() {
        Some(r) => format!("LoRA r={r}"),
        None => "full".into(),
    });
    for key in stage_keys(stage) {
        if let Some(v) = cfg.get(*key).filter(|v| !v.is_null()) {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
                v => v.to_string(),
            };
            settings.push(format!("{key} {v}"));
        }
    }
    format!("{line}; {}", settings.join(", "))
}

/// A JSON value as a reader would write it: strings without quotes.
fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// How many rows the run trained on, with their unit, from the stage's outcome.
fn rows(outcome: &Value) -> Option<String> {
    let data = &outcome["train_data"];
    [
        (data["rows"].as_u64(), "rows"),
        (data["pairs"].as_u64(), "pairs"),
        (outcome["train_pairs"].as_u64(), "pairs"),
        (outcome["prompts"].as_u64(), "prompts"),
    ]
    .into_iter()
    .find_map(|(n, unit)| n.map(|n| format!("{n} {unit}")))
}

/// The settings that say most about a stage's run besides the loop's.
fn stage_keys(stage: &str) -> &'static [&'static str] {
    match stage {
        "dpo" => &["loss", "beta"],
        "ppo" => &["algo", "kl_coef", "samples_per_prompt"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_a_record_and_finds_it_above_merged() {
        let dir = std::env::temp_dir().join(format!("rudder-prov-{}", std::process::id()));
        let merged = dir.join("merged");
        std::fs::create_dir_all(&merged).unwrap();
        let record = serde_json::json!({
            "trainer": {"batch_size": 4, "learning_rate": 1e-5},
            "dpo": {"data": "prefs.jsonl", "lora_r": 16, "loss": ["sigmoid", "sft"], "beta": 0.1},
            "outcome": {"summary": {"steps": 32}, "train_data": {"pairs": 128}},
        });
        std::fs::write(dir.join("dpo_run.json"), record.to_string()).unwrap();
        let want = "dpo: 32 steps on 128 pairs of prefs.jsonl; batch 4, lr 1e-5, LoRA r=16, \
                    loss sigmoid,sft, beta 0.1";
        for spec in [&dir, &merged] {
            let p = of(&spec.display().to_string()).expect("a record");
            assert_eq!(p.line, want);
            assert_eq!(p.folder, dir.canonicalize().unwrap());
        }
        // A folder no stage wrote, and a hub id, have none.
        assert!(of(&dir.join("nowhere").display().to_string()).is_none());
        assert!(of("HuggingFaceTB/SmolLM2-135M-Instruct").is_none());
        let sft = serde_json::json!({
            "trainer": {"batch_size": 2, "learning_rate": 2e-5},
            "sft": {"data": "sft.jsonl", "lora_r": null},
            "outcome": {"summary": {"steps": 24}, "train_data": {"rows": 96}},
        });
        assert_eq!(
            describe("sft", &sft),
            "sft: 24 steps on 96 rows of sft.jsonl; batch 2, lr 2e-5, full"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
