//! Phase 5: one minibatch of a rollout through the current policy, and its loss: PPO's clipped
//! surrogate plus clipped value loss, RLOO's and REINFORCE++'s clipped surrogate, or GRPO's
//! surrogate (TRL's loss types) plus β·KL to the reference.
use crate::config::{Algo, ImportanceSamplingLevel, LossType, PpoConfig};
use crate::frame::Frame;
use crate::loss::{
    clipped_value_loss, k3, policy_loss, weighted, weights, PolicyTerms, Reduce, Surrogate,
};
use crate::stage::{PpoStage, Rollout, Sample};
use crate::{Error, Result};
use candle_core::Tensor;
use lm::logprobs::PromptCompletion;
use std::collections::BTreeMap;
use std::time::Instant;
use train::StepOutput;

/// What a minibatch's forward pass made, for the algorithm's own loss terms.
struct Parts<'a> {
    logp: &'a Tensor,
    picked: &'a Tensor,
    frame: &'a Frame,
    w: &'a Tensor,
    rows: &'a [&'a Sample],
}

impl PpoStage {
    /// The rollout's completions used by update `update`: epoch `update / M` shuffles them
    /// (seeded by the rollout), minibatch `update % M` takes its slice. `M` is fixed by the
    /// config, so a short rollout (an epoch's last, smaller batch) gets smaller minibatches, not
    /// extra epochs.
    fn minibatch<'a>(&self, r: &'a Rollout, update: usize) -> Vec<&'a Sample> {
        let n = r.samples.len();
        let per_epoch = (self.updates / self.cfg.ppo_epochs.max(1)).max(1);
        let size = n.div_ceil(per_epoch).max(1);
        let (epoch, j) = (update / per_epoch, update % per_epoch);
        // Fewer completions than minibatches (a tiny last rollout): slices repeat, never run dry.
        let j = j % n.div_ceil(size).max(1);
        let perm = train::data::epoch_permutation(n, self.derive_seed(2, r.index), epoch);
        perm[(j * size).min(n)..((j + 1) * size).min(n)]
            .iter()
            .map(|&i| &r.samples[i])
            .collect()
    }

    /// `(rows, padded length)` of update `update`'s minibatch: the grid [`Frame::new`] pads
    /// its prompt + completion rows to.
    pub(crate) fn minibatch_shape(&self, r: &Rollout, update: usize) -> (usize, usize) {
        let rows = self.minibatch(r, update);
        let longest = rows
            .iter()
            .map(|s| s.ids.prompt.len() + s.ids.completion.len())
            .max()
            .unwrap_or(0);
        (rows.len(), longest)
    }

    pub(crate) fn minibatch_loss(&mut self, r: &Rollout, update: usize) -> Result<StepOutput> {
        let now = Instant::now();
        let rows = self.minibatch(r, update);
        let ids: Vec<PromptCompletion> = rows.iter().map(|s| s.ids.clone()).collect();
        let frame = Frame::new(&ids, self.tok.pad_id);
        let dev = self.policy.device().clone();
        let flat = |f: fn(&Sample) -> &[f32]| -> candle_core::Result<Tensor> {
            let v: Vec<&[f32]> = rows.iter().map(|s| f(s)).collect();
            frame.flat(&v, &dev)
        };
        // (B, T, H) -> completion positions (N, H) -> logits (N, V) at the sampling
        // temperature -> log-probs of the sampled tokens (N,)
        let hidden = self.policy.hidden_states(&frame.input)?;
        let picked = frame.gather(&hidden)?;
        let logits = (self.policy.logits(&picked)? / self.cfg.temperature)?;
        let logp = lm::logprobs::token_logprobs(&logits, &frame.targets(&dev)?)?;
        let w = weights(&frame.lens, reduce(&self.cfg));
        let w = Tensor::from_vec(w, frame.index.len(), &dev)?;
        let pg = policy_loss(
            &logp,
            &flat(|s| &s.old_logp)?,
            &flat(|s| &s.advantages)?,
            &w,
            &frame.lens,
            &surrogate(&self.cfg),
        )?;
        let mut metrics = r.metrics.clone();
        let parts = Parts {
            logp: &logp,
            picked: &picked,
            frame: &frame,
            w: &w,
            rows: &rows,
        };
        let loss = self.algo_loss(&pg.loss, &parts, &mut metrics)?;
        // MoE policies: the router load-balancing loss of this forward, as transformers adds it.
        let loss = match lm::moe::training_aux(&self.policy, &frame.input.segments)? {
            Some((aux, m)) => {
                metrics.extend(m);
                (loss + aux)?
            }
            None => loss,
        };
        self.log_policy(&pg, &mut metrics, now, update)?;
        let tokens = ids
            .iter()
            .map(|r| r.prompt.len() + r.completion.len())
            .sum();
        Ok(StepOutput {
            loss,
            tokens,
            metrics,
        })
    }

    /// The policy loss plus each algorithm's own term: PPO's value loss, GRPO's β·KL.
    fn algo_loss(
        &self,
        pg: &Tensor,
        p: &Parts,
        metrics: &mut BTreeMap<String, f64>,
    ) -> Result<Tensor> {
        let dev = p.logp.device();
        let flat = |f: fn(&Sample) -> &[f32]| -> candle_core::Result<Tensor> {
            let v: Vec<&[f32]> = p.rows.iter().map(|s| f(s)).collect();
            p.frame.flat(&v, dev)
        };
        Ok(match self.cfg.algo {
            Algo::Ppo => {
                let critic = self
                    .critic
                    .as_ref()
                    .ok_or_else(|| Error::setting("ppo", "critic", "ppo needs a value function"))?;
                let (vf, vf_clip) = clipped_value_loss(
                    &critic.values(p.picked, p.frame)?,
                    &flat(|s| &s.values)?,
                    &flat(|s| &s.returns)?,
                    self.cfg.cliprange_value,
                )?;
                metrics.insert("loss/value".into(), scalar(&vf)?);
                metrics.insert("val/clipfrac".into(), vf_clip);
                (pg + (vf * self.cfg.vf_coef)?)?
            }
            // The KL penalty is in their rewards.
            Algo::Rloo | Algo::Reinforce | Algo::ReinforceBaseline => pg.clone(),
            Algo::Grpo => {
                let kl = weighted(&k3(p.logp, &flat(|s| &s.ref_logp)?)?, p.w)?;
                metrics.insert("loss/kl".into(), scalar(&kl)?);
                (pg + (kl * self.state.kl.value)?)?
            }
        })
    }

    /// The policy term's metrics (TRL's names), the update's time; tracks the largest
    /// approximate KL for `early_stop_kl`.
    fn log_policy(
        &mut self,
        pg: &PolicyTerms,
        metrics: &mut BTreeMap<String, f64>,
        now: Instant,
        update: usize,
    ) -> Result<()> {
        metrics.insert("loss/policy".into(), scalar(&pg.loss)?);
        metrics.insert("policy/clipfrac".into(), pg.clipfrac);
        metrics.insert("policy/approxkl".into(), pg.approx_kl);
        if surrogate(&self.cfg).cispo {
            metrics.insert("cispo_clip_ratio".into(), pg.high_clipped);
        } else {
            metrics.insert("clip_ratio/low_mean".into(), pg.low_clipped);
            metrics.insert("clip_ratio/high_mean".into(), pg.high_clipped);
        }
        if let Some(prev) = self.last_update.filter(|_| update > 0) {
            metrics.insert(
                "time/update_s".into(),
                now.duration_since(prev).as_secs_f64(),
            );
        }
        self.last_update = Some(now);
        self.update_kl = self.update_kl.max(pg.approx_kl);
        Ok(())
    }
}

/// How a minibatch's per-token losses are reduced: PPO and REINFORCE++ average every token
/// (OpenRLHF's token-level loss), RLOO and GRPO each completion's tokens then the completions;
/// GRPO's other loss types as TRL (dapo and bnpo: every token of the micro-batch; dr_grpo:
/// the sum over completions × `max_new_tokens`).
pub(crate) fn reduce(cfg: &PpoConfig) -> Reduce {
    match (cfg.algo, cfg.loss_type) {
        (Algo::Rloo, _) | (Algo::Grpo, LossType::Grpo) => Reduce::Sequences,
        (Algo::Grpo, LossType::DrGrpo) => Reduce::Constant(cfg.max_new_tokens),
        _ => Reduce::Tokens,
    }
}

/// The policy surrogate the settings ask for.
pub(crate) fn surrogate(cfg: &PpoConfig) -> Surrogate {
    Surrogate {
        clip_low: cfg.cliprange,
        clip_high: cfg.clip_high(),
        cispo: cfg.algo == Algo::Grpo && cfg.loss_type == LossType::Cispo,
        sequence: cfg.importance_sampling_level == ImportanceSamplingLevel::Sequence,
    }
}

fn scalar(x: &Tensor) -> candle_core::Result<f64> {
    Ok(f64::from(
        x.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?,
    ))
}
