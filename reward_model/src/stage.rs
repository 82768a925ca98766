//! The reward-model `train::Stage`: pairs in, Bradley–Terry loss out. Everything else
//! (schedule, accumulation, clipping, checkpoints, resume, metrics) is `train::run`.
use crate::eval::evaluate_pairs;
use crate::loss::{batch_metrics, pairwise_loss};
use crate::model::{RewardModel, SCORE_WEIGHT};
use crate::pairs::Pair;
use crate::{Error, Result};
use candle_core::{Tensor, Var};
use std::collections::BTreeMap;

/// One micro-batch: the chosen rows then the rejected rows (TRL's collator order).
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// `2P` unpadded rows: chosen_0..P-1, rejected_0..P-1.
    pub rows: Vec<Vec<u32>>,
    /// `(P,)` margins when the stage uses them and a pair has one (missing ones count as 0).
    pub margins: Option<Vec<f32>>,
}

/// Reward-model training on preference pairs.
#[derive(Debug)]
pub struct RewardStage {
    pub model: RewardModel,
    pub train: Vec<Pair>,
    pub eval: Vec<Pair>,
    /// Subtract each pair's margin inside the sigmoid.
    pub use_margin: bool,
    /// TRL's `center_rewards_coefficient`.
    pub center_rewards_coefficient: Option<f64>,
    /// Extra trainable `Var`s that are not backbone weights (e.g. LoRA adapters).
    pub extra_params: Vec<(String, Var)>,
    /// `group_pairs`: training example `i` is the pairs `groups[i]` (see `pairs::group_indices`),
    /// so a batch holds whole groups. `None`: every pair is an example.
    pub groups: Option<Vec<Vec<usize>>>,
}

impl RewardStage {
    /// The `Var`s `train::run` updates: the backbone's trainable weights, any extra (adapter)
    /// weights, and the head.
    pub fn params(&self) -> Result<train::Params> {
        let mut vars: Vec<(String, Var)> = self.model.backbone_params.clone();
        vars.extend(self.extra_params.iter().cloned());
        vars.push((SCORE_WEIGHT.to_string(), self.model.score.clone()));
        train::Params::new(vars)
    }

    /// `(chosen, rejected)` rewards `(P,)` of a batch, one forward pass over all `2P` rows.
    pub fn pair_rewards(&self, batch: &PairBatch) -> Result<(Tensor, Tensor)> {
        let p = batch.rows.len() / 2;
        let r = self.model.rewards(&batch.rows, false)?;
        Ok((r.narrow(0, 0, p)?, r.narrow(0, p, p)?))
    }

    fn batch_loss(&self, batch: &PairBatch) -> Result<train::StepOutput> {
        let (rc, rr) = self.pair_rewards(batch)?;
        let margin = match &batch.margins {
            Some(m) => Some(Tensor::from_slice(m, m.len(), self.model.device())?),
            None => None,
        };
        let loss = pairwise_loss(&rc, &rr, margin.as_ref(), self.center_rewards_coefficient)?;
        let metrics = batch_metrics(&rc.to_vec1()?, &rr.to_vec1()?);
        Ok(train::StepOutput {
            loss,
            tokens: batch.rows.iter().map(Vec::len).sum(),
            metrics,
        })
    }
}

impl train::Stage for RewardStage {
    type Batch = PairBatch;

    fn num_examples(&self) -> usize {
        self.groups.as_ref().map_or(self.train.len(), Vec::len)
    }

    fn make_batch(&mut self, indices: &[usize]) -> train::Result<PairBatch> {
        let indices: Vec<usize> = match &self.groups {
            Some(groups) => indices
                .iter()
                .map(|&g| {
                    groups
                        .get(g)
                        .cloned()
                        .ok_or_else(|| Error::Invalid(format!("no training group {g}")))
                })
                .collect::<Result<Vec<_>>>()?
                .concat(),
            None => indices.to_vec(),
        };
        let pairs: Vec<&Pair> = indices
            .iter()
            .map(|&i| {
                self.train
                    .get(i)
                    .ok_or_else(|| Error::Invalid(format!("no training pair {i}")))
            })
            .collect::<Result<_>>()?;
        let rows = pairs
            .iter()
            .map(|p| p.chosen.clone())
            .chain(pairs.iter().map(|p| p.rejected.clone()))
            .collect();
        let margins = (self.use_margin && pairs.iter().any(|p| p.margin.is_some()))
            .then(|| pairs.iter().map(|p| p.margin.unwrap_or(0.0)).collect());
        Ok(PairBatch { rows, margins })
    }

    /// `RewardModel::rewards` pads the `2P` rows to the longest one.
    fn padded_shape(&self, batch: &PairBatch, _update: usize) -> Option<(usize, usize)> {
        let longest = batch.rows.iter().map(Vec::len).max().unwrap_or(0);
        Some((batch.rows.len(), longest))
    }

    fn loss(&mut self, batch: &PairBatch) -> train::Result<train::StepOutput> {
        self.batch_loss(batch)
    }

    fn evaluate(&mut self) -> train::Result<BTreeMap<String, f64>> {
        evaluate_pairs(
            &self.model,
            &self.eval,
            self.use_margin,
            self.center_rewards_coefficient,
        )
    }
}
