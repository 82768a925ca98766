//! Completion tokens of a right-padded prompt+completion batch as one flat list: row `i`'s
//! completion token `j` is predicted at position `p_i − 1 + j` (`p_i` its prompt length), so
//! gathering those `N = Σ L_i` hidden states first means the LM head, log-softmax and entropy
//! run on completion tokens only, never on prompts or padding.
use candle_core::{Device, Result, Tensor};
use lm::logprobs::PromptCompletion;
use lm::InputBatch;

/// A batch plus where each completion sits in it.
pub struct Frame {
    pub input: InputBatch,
    /// `(N,)` flat indices into the `(B·T)` positions predicting completion tokens.
    pub index: Vec<u32>,
    /// `(N,)` the completion tokens themselves.
    pub targets: Vec<u32>,
    /// Completion lengths `L_i`.
    pub lens: Vec<usize>,
}

impl Frame {
    pub fn new(rows: &[PromptCompletion], pad_id: u32) -> Self {
        let full: Vec<Vec<u32>> = rows.iter().map(|r| r.full()).collect();
        let input = InputBatch::padded(&full, pad_id, false);
        let t = input.t;
        let (mut index, mut targets) = (vec![], vec![]);
        for (i, r) in rows.iter().enumerate() {
            let start = i * t + r.prompt.len() - 1;
            index.extend((0..r.completion.len()).map(|j| (start + j) as u32));
            targets.extend_from_slice(&r.completion);
        }
        Self {
            input,
            index,
            targets,
            lens: rows.iter().map(|r| r.completion.len()).collect(),
        }
    }

    /// `(B, T, H)` -> `(N, H)`: the hidden states that predict completion tokens.
    pub fn gather(&self, hidden: &Tensor) -> Result<Tensor> {
        let (b, t, h) = hidden.dims3()?;
        let idx = Tensor::from_slice(&self.index, self.index.len(), hidden.device())?;
        hidden.reshape((b * t, h))?.index_select(&idx, 0)
    }

    pub fn targets(&self, device: &Device) -> Result<Tensor> {
        Tensor::from_slice(&self.targets, self.targets.len(), device)
    }

    /// Splits a flat `(N,)` tensor back into one vector per completion.
    pub fn split(&self, x: &Tensor) -> Result<Vec<Vec<f32>>> {
        let all: Vec<f32> = x.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        let mut at = 0;
        Ok(self
            .lens
            .iter()
            .map(|&l| {
                at += l;
                all[at - l..at].to_vec()
            })
            .collect())
    }

    /// Concatenates one vector per completion into a flat `(N,)` f32 tensor.
    pub fn flat(&self, rows: &[&[f32]], device: &Device) -> Result<Tensor> {
        let data: Vec<f32> = rows.concat();
        Tensor::from_vec(data, self.index.len(), device)
    }
}
