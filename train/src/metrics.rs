//! `metrics.jsonl` logging and the terminal progress bar.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One training log event (one line of `metrics.jsonl`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Optimizer steps completed.
    pub step: usize,
    /// Fractional epoch.
    pub epoch: f64,
    pub lr: f64,
    /// Mean loss over the steps since the previous event.
    pub loss: f64,
    /// Gradient norm of the last step, before clipping.
    pub grad_norm: f64,
    /// Tokens since the previous event.
    pub tokens: u64,
    pub tokens_per_s: f64,
    /// Training wall time so far, including resumed runs.
    pub elapsed_s: f64,
    /// What the run has cost so far (this call): FLOPs, phases, energy, CO2-eq, price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<cost::CostReport>,
    /// Stage metrics (means over the micro-batches since the previous event) and
    /// evaluation results (prefixed `eval_`).
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
}

/// Appends JSON lines to `metrics.jsonl`, flushing after every line so a crash or a
/// `tail -f` never sees a partial record.
#[derive(Debug)]
pub struct MetricsWriter {
    path: PathBuf,
    file: File,
}

impl MetricsWriter {
    /// Opens (appending) `path`. With `resume_step = Some(s)`, records with
    /// `step > s` are dropped first: they came from the part of a crashed run that
    /// is about to be redone.
    pub fn open(path: &Path, resume_step: Option<usize>) -> Result<Self> {
        if let Some(step) = resume_step.filter(|_| path.is_file()) {
            truncate_after(path, step)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(Error::io(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes any serializable record as one line.
    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(Error::json(&self.path))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.flush())
            .map_err(Error::io(&self.path))
    }
}

fn truncate_after(path: &Path, step: usize) -> Result<()> {
    let file = File::open(path).map_err(Error::io(path))?;
    let mut kept = String::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(Error::io(path))?;
        let value: Option<serde_json::Value> = serde_json::from_str(&line).ok();
        let line_step = value
            .as_ref()
            .and_then(|v| v.get("step"))
            .and_then(|s| s.as_u64());
        // Unparseable lines (a torn last write) are dropped too.
        if line_step.is_some_and(|s| s as usize <= step) {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    std::fs::write(path, kept).map_err(Error::io(path))
}

/// Progress bar on stderr: step/total, loss and tokens/s. Hidden when `quiet` or
/// when stderr is not a terminal (CI logs, redirected output).
pub fn progress_bar(total_steps: usize, start_step: usize, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total_steps as u64), ProgressDrawTarget::hidden());
    if !quiet && std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    let style = ProgressStyle::with_template(
        "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_position(start_step as u64);
    bar
}

/// The progress bar message for a log event.
pub fn progress_message(e: &LogEvent) -> String {
    format!("loss {:.4} | {:.0} tok/s", e.loss, e.tokens_per_s)
}

/// The line a trainer prints when it is done: `<stage>: N steps<rows>, final loss L, T tokens/s,
/// P trainable parameters[ (LoRA adapter)]; wrote OUT`.
pub fn done_line(
    stage: &str,
    rows: &str,
    s: &crate::TrainSummary,
    params: usize,
    lora: bool,
    out: &std::path::Path,
) -> String {
    format!(
        "{stage}: {} steps{rows}, final loss {:.4}, {:.0} tokens/s, {params} trainable parameters{}; wrote {}",
        s.steps,
        s.final_loss.unwrap_or(f64::NAN),
        s.tokens_per_s,
        if lora { " (LoRA adapter)" } else { "" },
        out.display()
    )
}

/// `eval k a -> b, …`: each metric before and after training (NaN where it was not logged).
pub fn eval_line(
    keys: &[&str],
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> String {
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    let parts: Vec<String> = keys
        .iter()
        .map(|k| format!("{k} {:.4} -> {:.4}", get(before, k), get(after, k)))
        .collect();
    format!("eval {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_lines_and_truncates_on_resume() -> Result<()> {
        let dir = tempfile::tempdir().map_err(Error::io(Path::new("tmp")))?;
        let path = dir.path().join("metrics.jsonl");
        let mut w = MetricsWriter::open(&path, None)?;
        for step in 1..=4 {
            let mut e = LogEvent {
                step,
                loss: 1.0 / step as f64,
                ..Default::default()
            };
            e.metrics.insert("reward".into(), 0.5);
            w.write(&e)?;
        }
        drop(w);
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        let first: LogEvent = serde_json::from_str(text.lines().next().unwrap_or_default())
            .map_err(Error::json(&path))?;
        assert_eq!(first.metrics.get("reward"), Some(&0.5));
        assert_eq!(first.step, 1);
        std::fs::write(&path, format!("{text}{{\"step\": 5, \"lo")).map_err(Error::io(&path))?;
        let mut w = MetricsWriter::open(&path, Some(2))?;
        w.write(&serde_json::json!({"step": 3, "eval_loss": 0.1}))?;
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        let steps: Vec<u64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["step"].as_u64())
            .collect();
        assert_eq!(steps, [1, 2, 3]);
        Ok(())
    }

    #[test]
    fn quiet_bar_is_hidden() {
        let bar = progress_bar(10, 3, true);
        assert!(bar.is_hidden());
        assert_eq!(bar.position(), 3);
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn done_and_eval_lines_read_as_the_cli_prints_them() {
        let s = crate::TrainSummary {
            steps: 3,
            final_loss: Some(0.5),
            tokens_per_s: 12.4,
            ..Default::default()
        };
        let line = done_line(
            "kto",
            " on 8 rows",
            &s,
            42,
            true,
            std::path::Path::new("runs/k"),
        );
        assert_eq!(
            line,
            "kto: 3 steps on 8 rows, final loss 0.5000, 12 tokens/s, 42 trainable parameters \
             (LoRA adapter); wrote runs/k"
        );
        let before = BTreeMap::from([("loss".to_string(), 0.75)]);
        let after = BTreeMap::from([("loss".to_string(), 0.25), ("kl".to_string(), 0.1)]);
        assert_eq!(
            eval_line(&["loss", "kl"], &before, &after),
            "eval loss 0.7500 -> 0.2500, kl NaN -> 0.1000"
        );
    }
}
