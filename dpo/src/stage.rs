//! DPO as a `train::Stage`: one concatenated policy forward per micro-batch, the reference's
//! log-probs from a frozen model (no `Var`s, so nothing is tracked) or precomputed.
use crate::batch::{halves, sequence_logps, PairBatch};
use crate::config::DpoConfig;
use crate::loss::{batch_loss, metrics, PairLogps};
use candle_core::{DType, Tensor};
use data::prefs::PrefTokens;
use lm::CausalLm;
use std::collections::BTreeMap;
use train::{Stage, StepOutput};

/// Tokenized pairs with their soft labels and, once computed, the reference sums.
#[derive(Debug, Clone, Default)]
pub struct PairSet {
    pub pairs: Vec<PrefTokens>,
    /// Probability that chosen is preferred, per pair.
    pub labels: Vec<f32>,
    /// `[chosen, rejected]` reference log-prob sums per pair (`--precompute-ref`).
    pub ref_logps: Option<Vec<[f32; 2]>>,
}

impl PairSet {
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The micro-batch of these pair indices.
    pub fn batch(&self, indices: &[usize], pad_id: u32) -> PairBatch {
        let pairs: Vec<&PrefTokens> = indices.iter().map(|&i| &self.pairs[i]).collect();
        let labels: Vec<f32> = indices.iter().map(|&i| self.labels[i]).collect();
        let refs = self
            .ref_logps
            .as_ref()
            .map(|r| indices.iter().map(|&i| r[i]).collect());
        PairBatch::new(&pairs, indices, &labels, refs, pad_id)
    }
}

/// The DPO training stage.
pub struct DpoStage {
    pub model: CausalLm,
    /// Live reference; `None` when precomputed or reference-free (simpo, sft).
    pub reference: Option<CausalLm>,
    pub train: PairSet,
    pub eval: PairSet,
    pub cfg: DpoConfig,
    pub pad_id: u32,
    pub eval_batch_size: usize,
}

/// A batch's differentiable loss, its per-pair losses and its metrics.
pub struct Forward {
    pub loss: Tensor,
    pub per_pair: Tensor,
    pub metrics: BTreeMap<String, f64>,
}

impl DpoStage {
    /// Reference sums `(2B,)` of a batch: precomputed, from the live reference, or zeros.
    fn reference_logps(&self, batch: &PairBatch) -> candle_core::Result<Tensor> {
        let dev = self.model.device();
        if let Some(r) = &batch.ref_logps {
            return Tensor::from_slice(r, r.len(), dev);
        }
        match &self.reference {
            Some(m) => Ok(sequence_logps(m, batch)?.0.detach()),
            None => Tensor::zeros(batch.seqs.input.b, DType::F32, dev),
        }
    }

    /// Policy (and reference) forward and the loss of one batch.
    pub fn forward(&self, batch: &PairBatch) -> candle_core::Result<Forward> {
        let dev = self.model.device();
        let (policy, _) = sequence_logps(&self.model, batch)?;
        // MoE policies: the router load-balancing loss of this forward, as transformers/TRL add it.
        let aux = lm::moe::training_aux(&self.model, &batch.seqs.input.segments)
            .map_err(candle_core::Error::wrap)?;
        let (pc, pr) = halves(&policy)?;
        let (rc, rr) = halves(&self.reference_logps(batch)?)?;
        let counts = &batch.seqs.counts;
        let counts = Tensor::from_slice(counts, counts.len(), dev)?;
        let (nc, nr) = halves(&counts)?;
        let labels = Tensor::from_slice(&batch.labels, batch.labels.len(), dev)?;
        let lp = PairLogps {
            policy_chosen: pc,
            policy_rejected: pr,
            ref_chosen: rc,
            ref_rejected: rr,
            n_chosen: nc,
            n_rejected: nr,
            labels,
        };
        let (mut loss, per_pair, nll) = batch_loss(&self.cfg, &lp)?;
        let mut m = metrics(&self.cfg, &lp)?;
        if let Some(nll) = nll {
            m.insert("nll".into(), f64::from(nll.to_scalar::<f32>()?));
        }
        if let Some((aux, am)) = aux {
            loss = (loss + aux)?;
            m.extend(am);
        }
        Ok(Forward {
            loss,
            per_pair,
            metrics: m,
        })
    }

    /// Mean loss and metrics over a whole set, weighted by pairs per batch.
    pub fn evaluate_set(&self, set: &PairSet) -> candle_core::Result<BTreeMap<String, f64>> {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let idx: Vec<usize> = (0..set.len()).collect();
        for chunk in idx.chunks(self.eval_batch_size.max(1)) {
            let out = self.forward(&set.batch(chunk, self.pad_id))?;
            let w = chunk.len() as f64;
            let loss = f64::from(out.loss.to_scalar::<f32>()?);
            for (k, v) in out.metrics.into_iter().chain([("loss".to_string(), loss)]) {
                *sums.entry(k).or_default() += v * w;
            }
        }
        let n = set.len().max(1) as f64;
        Ok(sums.into_iter().map(|(k, v)| (k, v / n)).collect())
    }

    /// Reference sums `[chosen, rejected]` for every pair of `set`, in eval-sized batches.
    pub fn reference_sums(
        &self,
        reference: &CausalLm,
        set: &PairSet,
    ) -> candle_core::Result<Vec<[f32; 2]>> {
        let mut out = Vec::with_capacity(set.len());
        let idx: Vec<usize> = (0..set.len()).collect();
        for chunk in idx.chunks(self.eval_batch_size.max(1)) {
            let batch = set.batch(chunk, self.pad_id);
            let sums = sequence_logps(reference, &batch)?
                .0
                .detach()
                .to_vec1::<f32>()?;
            let b = chunk.len();
            out.extend((0..b).map(|i| [sums[i], sums[b + i]]));
        }
        Ok(out)
    }

    /// `--precompute-ref`: fills both sets' reference sums, then frees the live reference.
    pub fn precompute_reference(&mut self) -> candle_core::Result<()> {
        if let Some(reference) = self.reference.take() {
            self.train.ref_logps = Some(self.reference_sums(&reference, &self.train)?);
            self.eval.ref_logps = Some(self.reference_sums(&reference, &self.eval)?);
        }
        Ok(())
    }
}

impl Stage for DpoStage {
    type Batch = PairBatch;

    fn num_examples(&self) -> usize {
        self.train.len()
    }

    fn make_batch(&mut self, indices: &[usize]) -> train::Result<PairBatch> {
        Ok(self.train.batch(indices, self.pad_id))
    }

    /// The `(2B, T)` concatenated forward, padding included.
    fn padded_shape(&self, batch: &PairBatch, _update: usize) -> Option<(usize, usize)> {
        Some((batch.seqs.input.b, batch.seqs.input.t))
    }

    fn loss(&mut self, batch: &PairBatch) -> train::Result<StepOutput> {
        let out = self.forward(batch)?;
        Ok(StepOutput {
            loss: out.loss,
            tokens: batch.input_tokens(),
            metrics: out.metrics,
        })
    }

    fn evaluate(&mut self) -> train::Result<BTreeMap<String, f64>> {
        if self.eval.is_empty() {
            return Ok(BTreeMap::new());
        }
        Ok(self.evaluate_set(&self.eval)?)
    }
}
