//! A micro-batch of B pairs as ONE forward over 2B rows (TRL's concatenated forward) and the
//! completion log-probs of each row, computed in f32 whatever the model's dtype (the rows and
//! their log-probs are `train::logps`, shared with KTO).
use candle_core::Tensor;
use data::prefs::PrefTokens;
use lm::CausalLm;
use train::logps::{completion_logps, CompletionBatch};

/// Rows `chosen_0..chosen_{B-1}, rejected_0..rejected_{B-1}`, right-padded, plus the flat
/// positions whose next token is a completion token.
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// The `(2B, T)` rows and their completion positions and counts.
    pub seqs: CompletionBatch,
    /// `(B,)` probability that chosen is preferred (1, or 0.5 for a soft tie).
    pub labels: Vec<f32>,
    /// `(2B,)` precomputed reference sums in the same row order, if any.
    pub ref_logps: Option<Vec<f32>>,
    /// Indices of the pairs in their dataset.
    pub pairs: Vec<usize>,
}

impl PairBatch {
    /// Number of pairs B.
    pub fn num_pairs(&self) -> usize {
        self.pairs.len()
    }

    /// Builds the batch; `labels[i]` and `refs[i] = [chosen, rejected]` go with `pairs[i]`.
    pub fn new(
        pairs: &[&PrefTokens],
        indices: &[usize],
        labels: &[f32],
        refs: Option<Vec<[f32; 2]>>,
        pad_id: u32,
    ) -> Self {
        let chosen = pairs.iter().map(|p| (&p.prompt[..], &p.chosen[..]));
        let rejected = pairs.iter().map(|p| (&p.prompt[..], &p.rejected[..]));
        let rows: Vec<(&[u32], &[u32])> = chosen.chain(rejected).collect();
        let ref_logps = refs.map(|v| {
            let (c, r): (Vec<f32>, Vec<f32>) = v.iter().map(|x| (x[0], x[1])).unzip();
            [c, r].concat()
        });
        Self {
            seqs: CompletionBatch::new(&rows, pad_id),
            labels: labels.to_vec(),
            ref_logps,
            pairs: indices.to_vec(),
        }
    }

    /// Completion tokens of the whole batch (both sides), for tokens/s.
    pub fn completion_tokens(&self) -> usize {
        self.seqs.completion_tokens()
    }

    /// Tokens the forward processes (2B rows, padding excluded).
    pub fn input_tokens(&self) -> usize {
        self.seqs.input_tokens()
    }
}

/// Per-row completion log-prob sums `(2B,)` and per-target log-probs `(N,)`, in f32
/// (`train::logps::completion_logps`: only the completion positions reach the LM head).
pub fn sequence_logps(
    model: &CausalLm,
    batch: &PairBatch,
) -> candle_core::Result<(Tensor, Tensor)> {
    completion_logps(model, &batch.seqs)
}

/// Splits `(2B,)` into the chosen and rejected halves `(B,)` each.
pub fn halves(t: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let b = t.dim(0)? / 2;
    Ok((t.narrow(0, 0, b)?, t.narrow(0, b, b)?))
}
