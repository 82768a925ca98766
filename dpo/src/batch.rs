//! A micro-batch of B pairs as ONE forward over 2B rows (TRL's concatenated forward) and the
//! completion log-probs of each row, computed in f32 whatever the model's dtype.
use candle_core::{DType, Tensor};
use data::prefs::PrefTokens;
use lm::logprobs::token_logprobs;
use lm::{CausalLm, InputBatch};

/// Rows `chosen_0..chosen_{B-1}, rejected_0..rejected_{B-1}`, right-padded, plus the flat
/// positions whose next token is a completion token.
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// `(2B, T)`.
    pub input: InputBatch,
    /// `(N,)` flat positions `row * T + t` whose target `ids[row, t + 1]` is a completion token.
    pub gather: Vec<u32>,
    /// `(N,)` those targets.
    pub targets: Vec<u32>,
    /// `(2B, N)` row-major 0/1: target `n` belongs to row `r`; turns `(N,)` into per-row sums.
    pub owner: Vec<f32>,
    /// `(2B,)` completion tokens per row.
    pub counts: Vec<f32>,
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
        let sides = [0usize, 1]
            .into_iter()
            .flat_map(|s| pairs.iter().map(move |p| (s, *p)));
        let rows: Vec<(Vec<u32>, usize)> = sides
            .map(|(s, p)| {
                let c = if s == 0 { &p.chosen } else { &p.rejected };
                ([p.prompt.as_slice(), c.as_slice()].concat(), p.prompt.len())
            })
            .collect();
        let ids: Vec<Vec<u32>> = rows.iter().map(|r| r.0.clone()).collect();
        let input = InputBatch::padded(&ids, pad_id, false);
        let (n_rows, t) = (input.b, input.t);
        let (mut gather, mut targets, mut row_of) = (vec![], vec![], vec![]);
        let mut counts = vec![0f32; n_rows];
        for (r, (ids, prompt_len)) in rows.iter().enumerate() {
            // Position j predicts ids[j + 1]; completion targets start at the prompt's end. With
            // an empty prompt the first completion token has no context and is not scored.
            for j in prompt_len.saturating_sub(1)..ids.len().saturating_sub(1) {
                gather.push((r * t + j) as u32);
                targets.push(ids[j + 1]);
                row_of.push(r);
                counts[r] += 1.0;
            }
        }
        let n = gather.len();
        let mut owner = vec![0f32; n_rows * n];
        for (k, &r) in row_of.iter().enumerate() {
            owner[r * n + k] = 1.0;
        }
        let ref_logps = refs.map(|v| {
            let (c, r): (Vec<f32>, Vec<f32>) = v.iter().map(|x| (x[0], x[1])).unzip();
            [c, r].concat()
        });
        Self {
            input,
            gather,
            targets,
            owner,
            counts,
            labels: labels.to_vec(),
            ref_logps,
            pairs: indices.to_vec(),
        }
    }

    /// Completion tokens of the whole batch (both sides), for tokens/s.
    pub fn completion_tokens(&self) -> usize {
        self.counts.iter().map(|&c| c as usize).sum()
    }

    /// Tokens the forward processes (2B rows, padding excluded).
    pub fn input_tokens(&self) -> usize {
        self.input.segments.iter().filter(|&&s| s != 0).count()
    }
}

/// Per-row completion log-prob sums `(2B,)` and per-target log-probs `(N,)`, in f32.
///
/// Only the completion positions reach the LM head: `(2B, T, H) -> (N, H) -> (N, V)`, so prompt
/// and padding logits are never materialised.
pub fn sequence_logps(
    model: &CausalLm,
    batch: &PairBatch,
) -> candle_core::Result<(Tensor, Tensor)> {
    let dev = model.device();
    let n = batch.gather.len();
    let rows = batch.input.b;
    if n == 0 {
        let z = Tensor::zeros(rows, DType::F32, dev)?;
        return Ok((z, Tensor::zeros(0, DType::F32, dev)?));
    }
    let hidden = model.hidden_states(&batch.input)?; // (2B, T, H)
    let (b, t, h) = hidden.dims3()?;
    let gather = Tensor::from_slice(&batch.gather, n, dev)?;
    let picked = hidden.reshape((b * t, h))?.index_select(&gather, 0)?; // (N, H)
    let logits = model.logits(&picked)?; // (N, V), f32
    let targets = Tensor::from_slice(&batch.targets, n, dev)?;
    let lp = token_logprobs(&logits, &targets).map_err(candle_core::Error::wrap)?; // (N,) f32
    let owner = Tensor::from_slice(&batch.owner, (rows, n), dev)?;
    // (2B, N) x (N, 1) -> (2B,)
    let sums = owner.matmul(&lp.unsqueeze(1)?)?.squeeze(1)?;
    Ok((sums, lp))
}

/// Splits `(2B,)` into the chosen and rejected halves `(B,)` each.
pub fn halves(t: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let b = t.dim(0)? / 2;
    Ok((t.narrow(0, 0, b)?, t.narrow(0, b, b)?))
}
