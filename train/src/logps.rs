//! Completion log-probs of a batch of (prompt, completion) rows as ONE forward, computed in f32
//! whatever the model's dtype: what the preference stages score sequences with (KTO's matched
//! and mismatched rows; DPO's chosen and rejected rows are the same computation).
use candle_core::{DType, Tensor};
use lm::logprobs::token_logprobs;
use lm::{CausalLm, InputBatch};

/// Right-padded rows `prompt ++ completion` plus the flat positions whose next token is a
/// completion token.
#[derive(Debug, Clone)]
pub struct CompletionBatch {
    /// `(R, T)`.
    pub input: InputBatch,
    /// `(N,)` flat positions `row * T + t` whose target `ids[row, t + 1]` is a completion token.
    pub gather: Vec<u32>,
    /// `(N,)` those targets.
    pub targets: Vec<u32>,
    /// `(R, N)` row-major 0/1: target `n` belongs to row `r`; turns `(N,)` into per-row sums.
    pub owner: Vec<f32>,
    /// `(R,)` completion tokens per row.
    pub counts: Vec<f32>,
}

impl CompletionBatch {
    /// Builds the batch of `rows` = `(prompt, completion)` token ids.
    pub fn new(rows: &[(&[u32], &[u32])], pad_id: u32) -> Self {
        let ids: Vec<Vec<u32>> = rows.iter().map(|(p, c)| [*p, *c].concat()).collect();
        let input = InputBatch::padded(&ids, pad_id, false);
        let t = input.t;
        let (mut gather, mut targets, mut row_of) = (vec![], vec![], vec![]);
        let mut counts = vec![0f32; input.b];
        for (r, (seq, (prompt, _))) in ids.iter().zip(rows).enumerate() {
            // Position j predicts seq[j + 1]; completion targets start at the prompt's end. With
            // an empty prompt the first completion token has no context and is not scored.
            for j in prompt.len().saturating_sub(1)..seq.len().saturating_sub(1) {
                gather.push((r * t + j) as u32);
                targets.push(seq[j + 1]);
                row_of.push(r);
                counts[r] += 1.0;
            }
        }
        let n = gather.len();
        let mut owner = vec![0f32; input.b * n];
        for (k, &r) in row_of.iter().enumerate() {
            owner[r * n + k] = 1.0;
        }
        Self {
            input,
            gather,
            targets,
            owner,
            counts,
        }
    }

    /// Completion tokens of the whole batch, for tokens/s.
    pub fn completion_tokens(&self) -> usize {
        self.counts.iter().map(|&c| c as usize).sum()
    }

    /// Tokens the forward processes (padding excluded).
    pub fn input_tokens(&self) -> usize {
        self.input.segments.iter().filter(|&&s| s != 0).count()
    }
}

/// Per-row completion log-prob sums `(R,)` and per-target log-probs `(N,)`, in f32.
///
/// Only the completion positions reach the LM head: `(R, T, H) -> (N, H) -> (N, V)`, so prompt
/// and padding logits are never materialised.
pub fn completion_logps(
    model: &CausalLm,
    batch: &CompletionBatch,
) -> candle_core::Result<(Tensor, Tensor)> {
    let dev = model.device();
    let n = batch.gather.len();
    let rows = batch.input.b;
    if n == 0 {
        let z = Tensor::zeros(rows, DType::F32, dev)?;
        return Ok((z, Tensor::zeros(0, DType::F32, dev)?));
    }
    let hidden = model.hidden_states(&batch.input)?; // (R, T, H)
    let (b, t, h) = hidden.dims3()?;
    let gather = Tensor::from_slice(&batch.gather, n, dev)?;
    let picked = hidden.reshape((b * t, h))?.index_select(&gather, 0)?; // (N, H)
    let logits = model.logits(&picked)?; // (N, V), f32
    let targets = Tensor::from_slice(&batch.targets, n, dev)?;
    let lp = token_logprobs(&logits, &targets).map_err(candle_core::Error::wrap)?; // (N,) f32
    let owner = Tensor::from_slice(&batch.owner, (rows, n), dev)?;
    // (R, N) x (N, 1) -> (R,)
    let sums = owner.matmul(&lp.unsqueeze(1)?)?.squeeze(1)?;
    Ok((sums, lp))
}
