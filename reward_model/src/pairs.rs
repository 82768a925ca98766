//! Preference files to token-id pairs, through the shared parser in `data::prefs`.
use crate::config::RewardConfig;
use crate::{Error, Result};
use data::prefs::{read_prefs, tokenize_all, ReadOptions, TokenizeOptions};
use lm::Tokenizer;
use std::path::Path;

/// One training or evaluation pair: the two full sequences (prompt ++ completion).
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// Line of the row in its file (element index for a JSON array).
    pub line: usize,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    /// TRL's optional `margin`.
    pub margin: Option<f32>,
    /// Share of annotators who preferred `chosen` (labeling export `agreement`, or from `votes`).
    pub agreement: Option<f64>,
    /// The row's `group` (a ranking's pairs share one).
    pub group: Option<String>,
}

/// Pair indices by `group`, groups in order of first appearance; a pair without a group is a
/// group of its own.
pub fn group_indices(pairs: &[Pair]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = vec![];
    let mut by_name: std::collections::HashMap<&str, usize> = Default::default();
    for (i, p) in pairs.iter().enumerate() {
        match p.group.as_deref() {
            Some(g) => {
                let slot = *by_name.entry(g).or_insert_with(|| {
                    out.push(vec![]);
                    out.len() - 1
                });
                out[slot].push(i);
            }
            None => out.push(vec![i]),
        }
    }
    out
}

/// The pairs of a file and what happened on the way.
#[derive(Debug, Clone, Default)]
pub struct PairData {
    pub pairs: Vec<Pair>,
    /// Pairs shortened to fit `max_seq_len`.
    pub truncated: usize,
    /// Lines dropped for length (`drop_long`).
    pub dropped: Vec<usize>,
    /// `(line, reason)` of rows skipped with `skip_bad_rows`.
    pub skipped: Vec<(usize, String)>,
}

impl PairData {
    /// One line for the log: how many pairs, and what was truncated, dropped or skipped.
    pub fn summary(&self, path: &Path) -> String {
        let mut s = format!("{}: {} pairs", path.display(), self.pairs.len());
        if self.truncated > 0 {
            s += &format!(", {} truncated to max_seq_len", self.truncated);
        }
        if !self.dropped.is_empty() {
            s += &format!(
                ", {} dropped as too long (lines {:?})",
                self.dropped.len(),
                first(&self.dropped)
            );
        }
        if !self.skipped.is_empty() {
            let lines: Vec<usize> = self.skipped.iter().map(|s| s.0).collect();
            s += &format!(
                ", {} bad rows skipped (lines {:?})",
                lines.len(),
                first(&lines)
            );
        }
        s
    }
}

fn first(lines: &[usize]) -> &[usize] {
    &lines[..lines.len().min(10)]
}

/// Reads, parses and tokenizes a preference file with the stage's length and strictness
/// settings. Errors name the file, the line and the field.
pub fn load_pairs(path: &Path, tok: &Tokenizer, cfg: &RewardConfig) -> Result<PairData> {
    let read = ReadOptions {
        skip_bad_rows: cfg.skip_bad_rows,
    };
    let prefs = read_prefs(path, &read)?;
    let opts = TokenizeOptions {
        max_seq_len: cfg.max_seq_len,
        drop_long: cfg.drop_long,
    };
    let tokens = tokenize_all(path, tok, &prefs.examples, &opts)?;
    let mut out = PairData {
        truncated: tokens.truncated,
        dropped: tokens.dropped,
        skipped: prefs.skipped,
        ..Default::default()
    };
    for t in tokens.pairs {
        let ex = &prefs.examples[t.index];
        let chosen = [t.prompt.as_slice(), &t.chosen].concat();
        let rejected = [t.prompt.as_slice(), &t.rejected].concat();
        if chosen == rejected {
            // Distinct texts can still meet as ids once truncation cut where they differ.
            let reason = "field `rejected`: same tokens as `chosen` after tokenization/truncation"
                .to_string();
            if cfg.skip_bad_rows {
                out.skipped.push((t.line, reason));
                continue;
            }
            return Err(Error::Row {
                path: path.to_path_buf(),
                line: t.line,
                reason,
            });
        }
        out.pairs.push(Pair {
            line: t.line,
            chosen,
            rejected,
            margin: ex.margin.map(|m| m as f32),
            agreement: ex
                .agreement
                .or_else(|| ex.votes.and_then(|v| v.chosen_share())),
            group: ex.group.clone(),
        });
    }
    if out.pairs.is_empty() {
        return Err(Error::Row {
            path: path.to_path_buf(),
            line: 0,
            reason: "no usable preference pairs".into(),
        });
    }
    Ok(out)
}
