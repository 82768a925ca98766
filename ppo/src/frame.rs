//! Moving per-completion numbers between ragged rows (one value per completion token) and the
//! dense `(B, T−1)` next-token frame of a right-padded prompt+completion batch, where row `i`'s
//! completion tokens are targets `p_i − 1 .. p_i − 1 + L_i` (`p_i` its prompt length).
use candle_core::{Device, Result, Tensor};
use lm::logprobs::{CompletionBatch, PromptCompletion};

/// A right-padded batch plus where each completion sits in the target frame.
pub struct Frame {
    pub batch: CompletionBatch,
    /// First target index of each completion (`p_i − 1`).
    pub offsets: Vec<usize>,
    /// Completion lengths.
    pub lens: Vec<usize>,
    /// `T − 1`.
    pub width: usize,
}

impl Frame {
    pub fn new(rows: &[PromptCompletion], pad_id: u32) -> lm::Result<Self> {
        let batch = CompletionBatch::new(rows, pad_id)?;
        Ok(Self {
            width: batch.input.t - 1,
            offsets: rows.iter().map(|r| r.prompt.len() - 1).collect(),
            lens: rows.iter().map(|r| r.completion.len()).collect(),
            batch,
        })
    }

    /// The completion values of each row of a `(B, T−1)` tensor.
    pub fn rows(&self, x: &Tensor) -> Result<Vec<Vec<f32>>> {
        let all: Vec<Vec<f32>> = x.to_dtype(candle_core::DType::F32)?.to_vec2()?;
        Ok(all
            .iter()
            .zip(self.offsets.iter().zip(&self.lens))
            .map(|(row, (&o, &l))| row[o..o + l].to_vec())
            .collect())
    }

    /// A `(B, T−1)` f32 tensor with `rows[i]` at row `i`'s completion targets, 0 elsewhere.
    pub fn dense(&self, rows: &[&[f32]], device: &Device) -> Result<Tensor> {
        let mut data = vec![0f32; rows.len() * self.width];
        for (i, r) in rows.iter().enumerate() {
            let start = i * self.width + self.offsets[i];
            data[start..start + r.len()].copy_from_slice(r);
        }
        Tensor::from_vec(data, (rows.len(), self.width), device)
    }
}
