//! Unpaired rows to a [`KtoSet`]: tokenized as TRL's `KTOTrainer` does, cut to `max_seq_len`
//! from the right (a row whose prompt alone fills it is dropped), and each row's mismatched KL
//! completion chosen as TRL chooses it.
use crate::config::KtoConfig;
use crate::{Error, Result};
use data::prefs::ReadOptions;
use data::unpaired::{read_unpaired, tokenize_unpaired};
use lm::Tokenizer;
use serde::{Deserialize, Serialize};
use std::path::Path;
use train::logps::CompletionBatch;

/// One tokenized row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KtoRow {
    /// Line of the row in its file.
    pub line: usize,
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
    /// Desirable (`true`) or undesirable.
    pub label: bool,
}

/// Tokenized rows, each row's KL completion (the index of the row it borrows its completion
/// from) and, once computed, the reference sums.
#[derive(Debug, Clone, Default)]
pub struct KtoSet {
    pub rows: Vec<KtoRow>,
    /// `kl_source[i]`: the row whose completion follows row i's prompt in its mismatched pair;
    /// empty when the loss reads no KL estimate.
    pub kl_source: Vec<usize>,
    /// Longest sequence; the mismatched sequences are cut to it from the right.
    pub max_seq_len: usize,
    /// `[matched, mismatched]` reference log-prob sums per row (`--precompute-ref`).
    pub ref_logps: Option<Vec<[f32; 2]>>,
}

/// What reading one file did, for the log and `kto_run.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataStats {
    pub rows: usize,
    pub desirable: usize,
    pub undesirable: usize,
    /// The file held pairs, each split into two rows.
    pub paired: bool,
    pub skipped: usize,
    pub ties_dropped: usize,
    pub truncated: usize,
    pub dropped_long: usize,
}

/// TRL's KL completions: within each block of `batch_size` consecutive rows the completions
/// rotate by one, `(x_1, y_n), (x_2, y_1), …, (x_n, y_{n-1})`.
pub fn kl_sources(n: usize, batch_size: usize) -> Vec<usize> {
    let b = batch_size.max(1);
    (0..n)
        .map(|i| {
            let start = i / b * b;
            let len = b.min(n - start);
            start + (i - start + len - 1) % len
        })
        .collect()
}

/// A micro-batch: the B matched rows, then (with the KL estimate) the B mismatched rows.
#[derive(Debug, Clone)]
pub struct KtoBatch {
    pub seqs: CompletionBatch,
    pub labels: Vec<bool>,
    /// Whether rows B..2B are the mismatched pairs.
    pub kl: bool,
    /// Precomputed reference sums in the same row order, if any.
    pub ref_logps: Option<Vec<f32>>,
    /// Indices of the rows in their set.
    pub rows: Vec<usize>,
}

impl KtoSet {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row i's mismatched completion, cut so that prompt + completion fits `max_seq_len`.
    fn kl_completion(&self, i: usize) -> &[u32] {
        let c = &self.rows[self.kl_source[i]].completion;
        let room = self.max_seq_len.saturating_sub(self.rows[i].prompt.len());
        &c[..c.len().min(room)]
    }

    /// The micro-batch of these row indices.
    pub fn batch(&self, indices: &[usize], pad_id: u32) -> KtoBatch {
        let kl = !self.kl_source.is_empty();
        let mut seqs: Vec<(&[u32], &[u32])> = indices
            .iter()
            .map(|&i| (&self.rows[i].prompt[..], &self.rows[i].completion[..]))
            .collect();
        if kl {
            seqs.extend(
                indices
                    .iter()
                    .map(|&i| (&self.rows[i].prompt[..], self.kl_completion(i))),
            );
        }
        let ref_logps = self.ref_logps.as_ref().map(|r| {
            let matched = indices.iter().map(|&i| r[i][0]);
            let mismatched = indices.iter().filter(|_| kl).map(|&i| r[i][1]);
            matched.chain(mismatched).collect()
        });
        KtoBatch {
            seqs: CompletionBatch::new(&seqs, pad_id),
            labels: indices.iter().map(|&i| self.rows[i].label).collect(),
            kl,
            ref_logps,
            rows: indices.to_vec(),
        }
    }
}

/// Reads, parses and tokenizes one file; `batch_size` sets the KL completions' blocks.
pub fn load_rows(
    tok: &Tokenizer,
    path: &Path,
    cfg: &KtoConfig,
    batch_size: usize,
) -> Result<(KtoSet, DataStats)> {
    let opts = ReadOptions {
        skip_bad_rows: cfg.skip_bad_rows,
    };
    let file = read_unpaired(path, &opts)?;
    for (line, reason) in &file.skipped {
        tracing::warn!("{}:{line}: skipped: {reason}", path.display());
    }
    let mut stats = DataStats {
        paired: file.paired,
        skipped: file.skipped.len(),
        ties_dropped: file.ties,
        ..Default::default()
    };
    let max = cfg.max_seq_len;
    let mut rows = Vec::with_capacity(file.examples.len());
    for ex in &file.examples {
        let (prompt, mut completion) = tokenize_unpaired(tok, ex).map_err(|e| Error::Row {
            path: path.to_path_buf(),
            line: ex.line,
            reason: format!("field `prompt`/`completion`: cannot tokenize: {e}"),
        })?;
        if completion.is_empty() {
            return Err(Error::Row {
                path: path.to_path_buf(),
                line: ex.line,
                reason: "field `completion`: no completion tokens after the prompt".into(),
            });
        }
        if prompt.len() >= max {
            stats.dropped_long += 1;
            continue;
        }
        if prompt.len() + completion.len() > max {
            completion.truncate(max - prompt.len());
            stats.truncated += 1;
        }
        rows.push(KtoRow {
            line: ex.line,
            prompt,
            completion,
            label: ex.label,
        });
    }
    finish(path, cfg, batch_size, rows, stats)
}

fn finish(
    path: &Path,
    cfg: &KtoConfig,
    batch_size: usize,
    rows: Vec<KtoRow>,
    mut stats: DataStats,
) -> Result<(KtoSet, DataStats)> {
    stats.rows = rows.len();
    stats.desirable = rows.iter().filter(|r| r.label).count();
    stats.undesirable = stats.rows - stats.desirable;
    if rows.is_empty() {
        return Err(Error::File {
            path: path.to_path_buf(),
            reason: format!(
                "no usable rows ({} skipped as bad, {} dropped: prompt longer than max_seq_len {}, \
                 {} tied pairs left out)",
                stats.skipped, stats.dropped_long, cfg.max_seq_len, stats.ties_dropped
            ),
        });
    }
    tracing::info!(
        "{}: {} rows ({} desirable, {} undesirable{}), {} skipped as bad, {} truncated and {} dropped at max_seq_len {}",
        path.display(),
        stats.rows,
        stats.desirable,
        stats.undesirable,
        if stats.paired { ", split from pairs" } else { "" },
        stats.skipped,
        stats.truncated,
        stats.dropped_long,
        cfg.max_seq_len
    );
    let kl_source = if cfg.loss.uses_kl() {
        kl_sources(rows.len(), batch_size)
    } else {
        vec![]
    };
    let set = KtoSet {
        rows,
        kl_source,
        max_seq_len: cfg.max_seq_len,
        ref_logps: None,
    };
    Ok((set, stats))
}

#[cfg(test)]
mod tests {
    use super::kl_sources;

    #[test]
    fn kl_completions_rotate_by_one_within_each_block() {
        assert_eq!(kl_sources(4, 4), vec![3, 0, 1, 2]);
        assert_eq!(kl_sources(5, 2), vec![1, 0, 3, 2, 4]);
        assert_eq!(kl_sources(7, 3), vec![2, 0, 1, 5, 3, 4, 6]);
    }
}
