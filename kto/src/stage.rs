//! KTO as a `train::Stage`: one policy forward per micro-batch over the matched rows and the
//! mismatched (KL) rows together; the reference's sums from a frozen model (no `Var`s, so
//! nothing is tracked) or precomputed.
use crate::config::KtoConfig;
use crate::loss::{kto_loss, metrics, KtoLogps};
use crate::prepare::{KtoBatch, KtoSet};
use candle_core::Tensor;
use lm::CausalLm;
use std::collections::BTreeMap;
use train::logps::completion_logps;
use train::{Stage, StepOutput};

/// The KTO training stage.
pub struct KtoStage {
    pub model: CausalLm,
    /// Live reference; `None` once precomputed.
    pub reference: Option<CausalLm>,
    pub train: KtoSet,
    pub eval: KtoSet,
    pub cfg: KtoConfig,
    pub pad_id: u32,
    pub eval_batch_size: usize,
}

/// A batch's differentiable loss, its per-row losses and its metrics.
pub struct Forward {
    pub loss: Tensor,
    pub per_row: Tensor,
    pub metrics: BTreeMap<String, f64>,
}

/// `(matched, mismatched)` halves of a batch's sums: `(B,)` each, or all and `None` without KL.
fn split(t: &Tensor, batch: &KtoBatch) -> candle_core::Result<(Tensor, Option<Tensor>)> {
    let b = batch.labels.len();
    if !batch.kl {
        return Ok((t.clone(), None));
    }
    Ok((t.narrow(0, 0, b)?, Some(t.narrow(0, b, b)?)))
}

impl KtoStage {
    /// The stage without a reference yet; evaluation and precomputing go in `eval_batch_size`
    /// batches.
    pub fn new(
        model: CausalLm,
        (train, eval): (KtoSet, KtoSet),
        cfg: &KtoConfig,
        pad_id: u32,
        eval_batch_size: usize,
    ) -> Self {
        Self {
            model,
            reference: None,
            train,
            eval,
            cfg: cfg.clone(),
            pad_id,
            eval_batch_size,
        }
    }

    /// Reference sums of every row of a batch: precomputed or from the live reference.
    fn reference_logps(&self, batch: &KtoBatch) -> candle_core::Result<Tensor> {
        if let Some(r) = &batch.ref_logps {
            return Tensor::from_slice(r, r.len(), self.model.device());
        }
        let reference = self.reference.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("kto: no reference model and no precomputed sums".into())
        })?;
        Ok(completion_logps(reference, &batch.seqs)?.0.detach())
    }

    /// Policy (and reference) forward and the loss of one batch.
    pub fn forward(&self, batch: &KtoBatch) -> candle_core::Result<Forward> {
        let (policy, _) = completion_logps(&self.model, &batch.seqs)?;
        // MoE policies: the router load-balancing loss of this forward, as transformers/TRL add it.
        let aux = lm::moe::training_aux(&self.model, &batch.seqs.input.segments)
            .map_err(candle_core::Error::wrap)?;
        let (policy, policy_kl) = split(&policy, batch)?;
        let (reference, ref_kl) = split(&self.reference_logps(batch)?, batch)?;
        let lp = KtoLogps {
            policy,
            reference,
            kl: policy_kl.zip(ref_kl),
            labels: batch.labels.clone(),
        };
        let (mut loss, per_row, z) = kto_loss(&self.cfg, &lp)?;
        let mut m = metrics(&self.cfg, &lp, z)?;
        if let Some((aux, am)) = aux {
            loss = (loss + aux)?;
            m.extend(am);
        }
        Ok(Forward {
            loss,
            per_row,
            metrics: m,
        })
    }

    /// Mean loss and metrics over a whole set in batches of `eval_batch_size` in file order
    /// (TRL's KL blocks), each metric weighted by the rows it was measured on.
    pub fn evaluate_set(&self, set: &KtoSet) -> candle_core::Result<BTreeMap<String, f64>> {
        let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let idx: Vec<usize> = (0..set.len()).collect();
        for chunk in idx.chunks(self.eval_batch_size.max(1)) {
            let batch = set.batch(chunk, self.pad_id);
            let out = self.forward(&batch)?;
            let loss = f64::from(out.loss.to_scalar::<f32>()?);
            let n = chunk.len() as f64;
            let desirable = batch.labels.iter().filter(|&&l| l).count() as f64;
            for (k, v) in out.metrics.into_iter().chain([("loss".to_string(), loss)]) {
                let w = if k.ends_with("/chosen") {
                    desirable
                } else if k.ends_with("/rejected") {
                    n - desirable
                } else {
                    n
                };
                let e = sums.entry(k).or_default();
                *e = (e.0 + v * w, e.1 + w);
            }
        }
        Ok(sums
            .into_iter()
            .filter(|(_, (_, w))| *w > 0.0)
            .map(|(k, (v, w))| (k, v / w))
            .collect())
    }

    /// Reference sums `[matched, mismatched]` for every row of `set`, in eval-sized batches.
    pub fn reference_sums(
        &self,
        reference: &CausalLm,
        set: &KtoSet,
    ) -> candle_core::Result<Vec<[f32; 2]>> {
        let mut out = Vec::with_capacity(set.len());
        let idx: Vec<usize> = (0..set.len()).collect();
        for chunk in idx.chunks(self.eval_batch_size.max(1)) {
            let batch = set.batch(chunk, self.pad_id);
            let sums = completion_logps(reference, &batch.seqs)?
                .0
                .detach()
                .to_vec1::<f32>()?;
            let b = chunk.len();
            let kl = |i: usize| if batch.kl { sums[b + i] } else { 0.0 };
            out.extend((0..b).map(|i| [sums[i], kl(i)]));
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

impl Stage for KtoStage {
    type Batch = KtoBatch;

    fn num_examples(&self) -> usize {
        self.train.len()
    }

    fn make_batch(&mut self, indices: &[usize]) -> train::Result<KtoBatch> {
        Ok(self.train.batch(indices, self.pad_id))
    }

    /// The matched and mismatched rows' forward, padding included.
    fn padded_shape(&self, batch: &KtoBatch, _update: usize) -> Option<(usize, usize)> {
        Some((batch.seqs.input.b, batch.seqs.input.t))
    }

    fn loss(&mut self, batch: &KtoBatch) -> train::Result<StepOutput> {
        let out = self.forward(batch)?;
        Ok(StepOutput {
            loss: out.loss,
            tokens: batch.seqs.input_tokens(),
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
