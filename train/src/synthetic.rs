//! A training step on random tokens (forward, mean next-token NLL, backward, AdamW): what
//! `rudder bench train` times and `rudder estimate` calibrates with.
use candle_core::Var;
use lm::logprobs::{CompletionBatch, PromptCompletion};
use lm::CausalLm;

use crate::data::SplitMix64;
use crate::{AdamW, AdamWConfig, GradAccumulator, Params, Result};

/// `rows` random rows of `len` token ids in `3..vocab` (ids below 3 are often special).
pub fn random_rows(rows: usize, len: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut s = SplitMix64::new(seed);
    let vocab = vocab.max(4) as u64;
    (0..rows)
        .map(|_| (0..len).map(|_| 3 + s.below(vocab - 3) as u32).collect())
        .collect()
}

/// The optimizer, parameters and a fixed batch of `batch` random rows of `seq` trained tokens.
pub struct SyntheticStep {
    params: Params,
    opt: AdamW,
    batch: CompletionBatch,
    lr: f64,
}

impl SyntheticStep {
    pub fn new(
        model: &CausalLm,
        params: Vec<(String, Var)>,
        batch: usize,
        seq: usize,
        lr: f64,
    ) -> Result<Self> {
        let rows = random_rows(batch, seq + 1, model.config.vocab_size, 1);
        let pcs: Vec<PromptCompletion> = rows
            .iter()
            .map(|r| PromptCompletion {
                prompt: r[..1].to_vec(),
                completion: r[1..].to_vec(),
            })
            .collect();
        Ok(Self {
            params: Params::new(params)?,
            opt: AdamW::new(AdamWConfig::default())?,
            batch: CompletionBatch::new(&pcs, 0)?,
            lr,
        })
    }

    /// Trainable parameters.
    pub fn num_elements(&self) -> usize {
        self.params.num_elements()
    }

    /// One step; returns the loss.
    pub fn run(&mut self, model: &CausalLm) -> Result<f32> {
        // forward (B, T, V) -> mean next-token NLL -> backward -> AdamW
        let logits = model.forward(&self.batch.input)?;
        let (lp, mask) = self.batch.logprobs(&logits)?;
        let loss = (lp.sum_all()?.neg()? / mask.sum_all()?.to_scalar::<f32>()? as f64)?;
        let grads = GradAccumulator::from_store(&self.params, &loss.backward()?)?;
        self.opt.step(&self.params, &grads, self.lr)?;
        Ok(loss.to_scalar::<f32>()?)
    }
}
