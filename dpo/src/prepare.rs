//! Preference files to [`PairSet`]s (ties, length limits, bad rows logged), and the cache of
//! precomputed reference log-probs.
use crate::config::{DpoConfig, Ties};
use crate::stage::PairSet;
use crate::{Error, Result};
use data::prefs::{read_prefs, tokenize_all, ReadOptions, TokenizeOptions};
use lm::Tokenizer;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What reading one file did, for the log and `dpo_run.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataStats {
    pub pairs: usize,
    pub skipped: usize,
    pub truncated: usize,
    pub dropped_long: usize,
    pub ties_dropped: usize,
    pub ties_soft: usize,
}

/// Reads, parses and tokenizes one preference file as configured.
pub fn load_pairs(tok: &Tokenizer, path: &Path, cfg: &DpoConfig) -> Result<(PairSet, DataStats)> {
    let file = read_prefs(
        path,
        &ReadOptions {
            skip_bad_rows: cfg.skip_bad_rows,
        },
    )?;
    for (line, reason) in &file.skipped {
        tracing::warn!("{}:{line}: skipped: {reason}", path.display());
    }
    let mut stats = DataStats {
        skipped: file.skipped.len(),
        ..Default::default()
    };
    let (ties, examples): (Vec<_>, Vec<_>) = file.examples.into_iter().partition(|e| e.tie);
    let examples = match cfg.ties {
        Ties::Drop => {
            stats.ties_dropped = ties.len();
            examples
        }
        Ties::Soft => {
            stats.ties_soft = ties.len();
            let mut all: Vec<_> = examples.into_iter().chain(ties).collect();
            all.sort_by_key(|e| e.line);
            all
        }
    };
    let opts = TokenizeOptions {
        max_seq_len: Some(cfg.max_seq_len),
        drop_long: cfg.drop_long,
    };
    let tokens = tokenize_all(path, tok, &examples, &opts)?;
    stats.truncated = tokens.truncated;
    stats.dropped_long = tokens.dropped.len();
    stats.pairs = tokens.pairs.len();
    if tokens.pairs.is_empty() {
        return Err(Error::File {
            path: path.to_path_buf(),
            reason: format!(
                "no usable pairs ({} skipped as bad, {} dropped as too long, {} ties dropped)",
                stats.skipped, stats.dropped_long, stats.ties_dropped
            ),
        });
    }
    let labels = tokens
        .pairs
        .iter()
        .map(|p| examples[p.index].chosen_prob() as f32)
        .collect();
    tracing::info!(
        "{}: {} pairs, {} skipped as bad, {} truncated and {} dropped at max_seq_len {}, ties: {} dropped, {} soft",
        path.display(),
        stats.pairs,
        stats.skipped,
        stats.truncated,
        stats.dropped_long,
        cfg.max_seq_len,
        stats.ties_dropped,
        stats.ties_soft
    );
    let set = PairSet {
        pairs: tokens.pairs,
        labels,
        ref_logps: None,
    };
    Ok((set, stats))
}

/// `ref_logps.json` in the run folder: the precomputed reference sums and what they belong to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefCache {
    /// Hash of the reference spec and every pair's token ids; a mismatch means recompute.
    pub fingerprint: String,
    pub reference: String,
    pub train: Vec<[f32; 2]>,
    pub eval: Vec<[f32; 2]>,
}

/// FNV-1a over the reference spec and the token ids of both sets: stable across runs and
/// platforms (std's `DefaultHasher` is not guaranteed to be).
pub fn fingerprint(reference: &str, sets: &[&PairSet]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(reference.as_bytes());
    for set in sets {
        eat(&(set.len() as u64).to_le_bytes());
        for p in &set.pairs {
            for ids in [&p.prompt, &p.chosen, &p.rejected] {
                eat(&(ids.len() as u64).to_le_bytes());
                ids.iter().for_each(|t| eat(&t.to_le_bytes()));
            }
        }
    }
    format!("{h:016x}")
}

/// The cache at `path` if it exists and matches `fingerprint`.
pub fn read_cache(path: &Path, fingerprint: &str) -> Option<RefCache> {
    let text = std::fs::read_to_string(path).ok()?;
    let cache: RefCache = serde_json::from_str(&text).ok()?;
    (cache.fingerprint == fingerprint).then_some(cache)
}

/// Writes the cache atomically (temp file + rename), so a crash never leaves half a file.
pub fn write_cache(path: &Path, cache: &RefCache) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec(cache).map_err(|e| Error::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p, source }
    };
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
