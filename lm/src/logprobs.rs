//! Per-token log-probabilities, computed in f32 whatever the model dtype.
use crate::error::{Error, Result};
use crate::model::{CausalLm, InputBatch};
use candle_core::{DType, Tensor, D};

/// `log p(target)` for every position: logits `(B, T, V)`, targets `(B, T)` -> `(B, T)` in f32.
/// Uses `logit[target] - logsumexp(logits)`, which never materialises the full log-softmax.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    // gather needs a contiguous input; f32 logits from the model already are (no copy then).
    let logits = logits.to_dtype(DType::F32)?.contiguous()?;
    let lse = match crate::fused::logsumexp_last(&logits)? {
        Some(lse) => lse,
        None => {
            let max = logits.max_keepdim(D::Minus1)?.detach();
            logits
                .broadcast_sub(&max)?
                .exp()?
                .sum_keepdim(D::Minus1)?
                .log()?
                .broadcast_add(&max)?
        }
    };
    let picked = logits.gather(&targets.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?;
    Ok((picked - lse)?.squeeze(D::Minus1)?)
}

/// A prompt and a completion as token ids; the completion is what gets scored or trained.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptCompletion {
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
}

impl PromptCompletion {
    pub fn full(&self) -> Vec<u32> {
        [self.prompt.as_slice(), self.completion.as_slice()].concat()
    }
}

/// A right-padded batch of prompt+completion rows with the mask of completion targets.
#[derive(Debug, Clone)]
pub struct CompletionBatch {
    pub input: InputBatch,
    /// `(B, T-1)` f32: 1 where the target `ids[:, t+1]` is a completion token.
    pub target_mask: Vec<f32>,
    /// `(B, T-1)` u32 next-token targets.
    pub targets: Vec<u32>,
}

impl CompletionBatch {
    pub fn new(rows: &[PromptCompletion], pad_id: u32) -> Result<Self> {
        if rows.iter().any(|r| r.prompt.len() + r.completion.len() < 2) {
            return Err(Error::Invalid("a row needs at least two tokens".into()));
        }
        let full: Vec<Vec<u32>> = rows.iter().map(|r| r.full()).collect();
        let input = InputBatch::padded(&full, pad_id, false);
        let (b, t) = (input.b, input.t);
        let mut target_mask = vec![0f32; b * (t - 1)];
        let mut targets = vec![pad_id; b * (t - 1)];
        for (i, r) in rows.iter().enumerate() {
            let n = r.prompt.len() + r.completion.len();
            for j in 0..n - 1 {
                targets[i * (t - 1) + j] = full[i][j + 1];
                // Target j+1 is a completion token when j+1 >= prompt length.
                if j + 1 >= r.prompt.len() {
                    target_mask[i * (t - 1) + j] = 1.0;
                }
            }
        }
        Ok(Self {
            input,
            target_mask,
            targets,
        })
    }

    /// Per-token log-probs of the targets `(B, T-1)` and the mask `(B, T-1)`, given logits.
    pub fn logprobs(&self, logits: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t) = (self.input.b, self.input.t);
        let dev = logits.device();
        // Score all T positions against targets padded by one column, then drop the last
        // position: narrowing the (B, T, V) logits first would force a copy of them.
        let mut padded = Vec::with_capacity(b * t);
        for row in self.targets.chunks(t - 1) {
            padded.extend_from_slice(row);
            padded.push(0);
        }
        let targets = Tensor::from_vec(padded, (b, t), dev)?;
        let mask = Tensor::from_slice(&self.target_mask, (b, t - 1), dev)?;
        let lp = token_logprobs(logits, &targets)?.narrow(1, 0, t - 1)?;
        Ok(((lp * &mask)?, mask))
    }

    /// Sum of completion log-probs and completion token counts per row, `(B,)` each.
    pub fn sequence_logprobs(&self, model: &CausalLm) -> Result<(Tensor, Tensor)> {
        let logits = model.forward(&self.input)?;
        let (lp, mask) = self.logprobs(&logits)?;
        Ok((lp.sum(D::Minus1)?, mask.sum(D::Minus1)?))
    }
}
