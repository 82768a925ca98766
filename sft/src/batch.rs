//! Rows of samples to a model batch with next-token targets, and packing.
use crate::tokenize::Sample;
use lm::InputBatch;
use std::collections::BTreeSet;

/// A micro-batch: the input rows and, for every trained target, where it is predicted.
#[derive(Debug, Clone)]
pub struct SftBatch {
    /// `(B, T)`; one segment per sample, so packed samples never attend to each other and
    /// restart their positions at 0.
    pub input: InputBatch,
    /// `(N,)` flat indices `b * T + t` into the `(B, T)` grid of the positions whose next
    /// token is a target: the logits there predict `targets`.
    pub gather: Vec<u32>,
    /// `(N,)` target ids.
    pub targets: Vec<u32>,
    /// Non-padding input tokens (what tokens/s counts).
    pub input_tokens: usize,
}

impl SftBatch {
    /// `rows[i]` lists the samples of row `i` (one sample per row unless packing). Token `j`
    /// of a sample is a target when `loss[j]` and `j >= 1`: it is predicted at position
    /// `j - 1` of the same sample, so a target never comes from another sample of the row.
    pub fn new(rows: &[Vec<&Sample>], pad_id: u32) -> Self {
        let ids: Vec<Vec<Vec<u32>>> = rows
            .iter()
            .map(|r| r.iter().map(|s| s.ids.clone()).collect())
            .collect();
        let input = InputBatch::packed(&ids, pad_id);
        let (mut gather, mut targets) = (vec![], vec![]);
        for (b, row) in rows.iter().enumerate() {
            let mut offset = b * input.t;
            for s in row {
                for j in 1..s.ids.len() {
                    if s.loss[j] {
                        gather.push((offset + j - 1) as u32);
                        targets.push(s.ids[j]);
                    }
                }
                offset += s.ids.len();
            }
        }
        let input_tokens = rows.iter().flatten().map(|s| s.ids.len()).sum();
        Self {
            input,
            gather,
            targets,
            input_tokens,
        }
    }
}

/// Best-fit-decreasing packing (TRL's `bfd`): samples, longest first, each go into the open
/// row with the least room that still fits them, or a new row. Returns rows of sample
/// indices, rows in creation order and samples in insertion order, so it is deterministic.
/// Samples are at most `capacity` long (they were truncated to `max_seq_len`).
pub fn pack(lengths: &[usize], capacity: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Stable: equal lengths keep file order.
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut rows: Vec<Vec<usize>> = vec![];
    // (room left, row index): the first entry with room >= len is the best fit.
    let mut room: BTreeSet<(usize, usize)> = BTreeSet::new();
    for i in order {
        let len = lengths[i].min(capacity);
        match room.range((len, 0)..).next().copied() {
            Some((left, r)) => {
                room.remove(&(left, r));
                rows[r].push(i);
                room.insert((left - len, r));
            }
            None => {
                rows.push(vec![i]);
                room.insert((capacity - len, rows.len() - 1));
            }
        }
    }
    rows
}
