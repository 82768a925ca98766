//! SFT as a `train::Stage`: rows (plain or packed) into batches, the loss of [`crate::loss`].
use crate::batch::{pack, SftBatch};
use crate::loss::{batch_nll, sft_loss};
use crate::tokenize::Sample;
use lm::CausalLm;
use std::collections::BTreeMap;

/// Training (and evaluation) rows, each one sample or several packed ones.
pub struct SftStage {
    pub model: CausalLm,
    rows: Vec<Vec<Sample>>,
    eval_rows: Vec<Vec<Sample>>,
    pad_id: u32,
    eval_batch_size: usize,
}

/// Groups samples into rows: one per row, or packed up to `packing = Some(max_seq_len)`.
pub fn into_rows(samples: Vec<Sample>, packing: Option<usize>) -> Vec<Vec<Sample>> {
    let Some(cap) = packing else {
        return samples.into_iter().map(|s| vec![s]).collect();
    };
    let lengths: Vec<usize> = samples.iter().map(|s| s.ids.len()).collect();
    let mut slots: Vec<Option<Sample>> = samples.into_iter().map(Some).collect();
    pack(&lengths, cap)
        .into_iter()
        .map(|row| row.into_iter().filter_map(|i| slots[i].take()).collect())
        .collect()
}

impl SftStage {
    pub fn new(
        model: CausalLm,
        rows: Vec<Vec<Sample>>,
        eval_rows: Vec<Vec<Sample>>,
        pad_id: u32,
        eval_batch_size: usize,
    ) -> Self {
        Self {
            model,
            rows,
            eval_rows,
            pad_id,
            eval_batch_size: eval_batch_size.max(1),
        }
    }

    pub fn rows(&self) -> &[Vec<Sample>] {
        &self.rows
    }

    fn batch_of(&self, rows: &[Vec<Sample>], indices: &[usize]) -> SftBatch {
        let picked: Vec<Vec<&Sample>> = indices.iter().map(|&i| rows[i].iter().collect()).collect();
        SftBatch::new(&picked, self.pad_id)
    }
}

impl train::Stage for SftStage {
    type Batch = SftBatch;

    fn num_examples(&self) -> usize {
        self.rows.len()
    }

    fn make_batch(&mut self, indices: &[usize]) -> train::Result<SftBatch> {
        Ok(self.batch_of(&self.rows, indices))
    }

    /// The whole `(B, T)` input goes through the model, padding included.
    fn padded_shape(&self, batch: &SftBatch, _update: usize) -> Option<(usize, usize)> {
        Some((batch.input.b, batch.input.t))
    }

    /// Mean NLL over the micro-batch's targets. `tokens` counts non-padding input tokens.
    fn loss(&mut self, batch: &SftBatch) -> train::Result<train::StepOutput> {
        let (loss, metrics) = sft_loss(&self.model, batch)?;
        Ok(train::StepOutput {
            loss,
            tokens: batch.input_tokens,
            metrics,
        })
    }

    /// Token-weighted mean NLL and accuracy over the whole eval set.
    fn evaluate(&mut self) -> train::Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        if self.eval_rows.is_empty() {
            return Ok(out);
        }
        let (mut nll, mut correct, mut count) = (0.0, 0.0, 0usize);
        let all: Vec<usize> = (0..self.eval_rows.len()).collect();
        for chunk in all.chunks(self.eval_batch_size) {
            let batch = self.batch_of(&self.eval_rows, chunk);
            let (s, c, n) = batch_nll(&self.model, &batch)?;
            nll += s.to_scalar::<f32>()? as f64;
            correct += c;
            count += n;
        }
        out.insert("loss".into(), nll / count.max(1) as f64);
        out.insert("mean_token_accuracy".into(), correct / count.max(1) as f64);
        Ok(out)
    }
}
