//! The SFT loss as a `train::Stage`: mean next-token cross-entropy over the trained targets.
use crate::batch::{pack, SftBatch};
use crate::tokenize::Sample;
use candle_core::{DType, Tensor, D};
use lm::logprobs::token_logprobs;
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

/// Log-probabilities of the batch's targets `(N,)` and the logits that gave them `(N, V)`.
pub fn target_logprobs(
    model: &CausalLm,
    batch: &SftBatch,
) -> candle_core::Result<(Tensor, Tensor)> {
    let n = batch.targets.len();
    let dev = model.device();
    // (B, T, H) -> (B*T, H) -> (N, H): only positions with a target reach the LM head, so
    // the (N, V) logits are all that is materialised (prompt positions never are).
    let hidden = model.hidden_states(&batch.input)?;
    let (b, t, h) = hidden.dims3()?;
    let gather = Tensor::from_slice(&batch.gather, n, dev)?;
    let picked = hidden.reshape((b * t, h))?.index_select(&gather, 0)?;
    let logits = model.logits(&picked)?; // (N, V) f32
    let targets = Tensor::from_slice(&batch.targets, n, dev)?;
    let lp = token_logprobs(&logits, &targets).map_err(candle_core::Error::wrap)?; // (N,)
    Ok((lp, logits))
}

/// Sum of the target NLLs `()`, correct argmax predictions, and the target count of a batch.
pub fn batch_nll(model: &CausalLm, batch: &SftBatch) -> candle_core::Result<(Tensor, f64, usize)> {
    let n = batch.targets.len();
    if n == 0 {
        return Ok((Tensor::zeros((), DType::F32, model.device())?, 0.0, 0));
    }
    let (lp, logits) = target_logprobs(model, batch)?;
    let targets = Tensor::from_slice(&batch.targets, n, model.device())?;
    let correct = logits
        .detach()
        .argmax(D::Minus1)?
        .eq(&targets)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok((lp.sum_all()?.neg()?, correct as f64, n))
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

    /// Adapter dropout (`lora_dropout`) runs in training forwards only, with masks drawn from
    /// the micro-batch's position.
    fn set_position(&mut self, position: Option<train::Position>) {
        self.model.set_dropout_key(position.map(|p| p.key()));
    }

    /// The model may checkpoint its layers: their gradients come from recomputation.
    fn backward(
        &mut self,
        loss: &candle_core::Tensor,
    ) -> train::Result<candle_core::backprop::GradStore> {
        Ok(lm::checkpoint::backward(loss)?)
    }

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
        let (sum, correct, n) = batch_nll(&self.model, batch)?;
        let denom = n.max(1) as f64;
        let mut metrics = BTreeMap::new();
        metrics.insert("mean_token_accuracy".into(), correct / denom);
        metrics.insert("loss_tokens".into(), n as f64);
        let mut loss = sum.affine(1.0 / denom, 0.0)?;
        // MoE models: the router load-balancing loss, as transformers adds it.
        if let Some((aux, m)) = lm::moe::training_aux(&self.model, &batch.input.segments)
            .map_err(candle_core::Error::wrap)?
        {
            loss = (loss + aux)?;
            metrics.extend(m);
        }
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
