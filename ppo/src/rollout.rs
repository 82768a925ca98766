//! Making a rollout: (1) sample with the KV cache → (2) score (and drop groups that all scored
//! alike, with `dynamic_sampling`) → (3) log-probs under policy and reference, per-token KL →
//! (4) advantages. Phase 5 (update) is in `update.rs`.
use crate::frame::Frame;
use crate::reward::Item;
use crate::stage::{PpoStage, Rollout, Sample};
use crate::{Error, Result};
use candle_core::{DType, Tensor, D};
use lm::generate::{generate, SamplingConfig};
use lm::logprobs::PromptCompletion;
use std::collections::BTreeMap;
use std::time::Instant;

/// Per-token numbers of a forward pass over completions.
pub(crate) struct Pass {
    pub logp: Vec<Vec<f32>>,
    pub values: Vec<Vec<f32>>,
    pub entropy: Vec<Vec<f32>>,
}

impl PpoStage {
    pub(crate) fn rollout(&mut self, indices: &[usize]) -> Result<Rollout> {
        let index = self.state.rollouts;
        let mut m = BTreeMap::new();
        // 1. rollout: k completions per prompt, sampled in one batch with the KV cache
        let t = Instant::now();
        let mut samples = self.sample(indices, index)?;
        let gen_s = t.elapsed().as_secs_f64();
        let new_tokens: usize = samples.iter().map(|s| s.ids.completion.len()).sum();
        m.insert("time/generation_s".into(), gen_s);
        m.insert(
            "rollout_tokens_per_s".into(),
            new_tokens as f64 / gen_s.max(1e-9),
        );
        // 2. score
        let t = Instant::now();
        self.score(&mut samples, index)?;
        m.insert("time/scoring_s".into(), t.elapsed().as_secs_f64());
        self.describe(&samples, &mut m);
        if self.cfg.k() >= 2 {
            self.drop_equal_groups(&mut samples, &mut m);
        }
        // 3. KL: log-probs of the sampled tokens under the policy (with values) and reference
        let t = Instant::now();
        let entropy = self.logprobs(&mut samples, index)?;
        m.insert("time/logprobs_s".into(), t.elapsed().as_secs_f64());
        m.insert("objective/entropy".into(), entropy);
        // 4. advantages
        self.advantages(&mut samples, &mut m);
        self.state.rollouts += 1;
        self.log_samples(index, &samples);
        Ok(Rollout {
            index,
            samples,
            metrics: m,
        })
    }

    fn sample(&self, indices: &[usize], index: usize) -> Result<Vec<Sample>> {
        let k = self.cfg.k();
        let which: Vec<usize> = indices.iter().flat_map(|&i| [i].repeat(k)).collect();
        let prompts: Vec<Vec<u32>> = which.iter().map(|&i| self.prompts[i].ids.clone()).collect();
        let sampling = SamplingConfig {
            max_new_tokens: self.cfg.max_new_tokens,
            temperature: self.cfg.temperature as f32,
            top_k: self.cfg.top_k,
            top_p: self.cfg.top_p as f32,
            repetition_penalty: 1.0,
            seed: self.derive_seed(1, index),
            stop_strings: vec![],
        };
        let gens = generate(&self.policy, &self.tok, &prompts, &sampling)?;
        Ok(which
            .into_iter()
            .zip(prompts)
            .zip(gens)
            .map(|((prompt, ids), g)| Sample {
                prompt,
                ids: PromptCompletion {
                    prompt: ids,
                    completion: g.tokens,
                },
                text: g.text,
                finished: g.finished,
                raw_score: 0.0,
                score: 0.0,
                old_logp: vec![],
                ref_logp: vec![],
                values: vec![],
                advantages: vec![],
                returns: vec![],
            })
            .collect())
    }

    /// Raw scores, then the EOS penalty, running normalisation and clipping.
    fn score(&mut self, samples: &mut [Sample], index: usize) -> Result<()> {
        let items: Vec<Item> = samples
            .iter()
            .map(|s| Item {
                prompt: &self.prompts[s.prompt],
                completion_ids: &s.ids.completion,
                completion_text: &s.text,
            })
            .collect();
        let raw = self.scorer.score(&items)?;
        if let Some(bad) = raw.iter().position(|r| !r.is_finite()) {
            return Err(self.non_finite(index, format!("reward of completion {bad}")));
        }
        let mut shaped: Vec<f64> = samples
            .iter()
            .zip(&raw)
            .map(|(s, &r)| match self.cfg.missing_eos_penalty {
                Some(p) if !s.finished => r - p,
                _ => r,
            })
            .collect();
        if self.cfg.normalize_scores {
            self.state.scores.update(&shaped);
            let (mean, std) = (self.state.scores.mean, self.state.scores.std());
            shaped.iter_mut().for_each(|x| *x = (*x - mean) / std);
        }
        if let Some(c) = self.cfg.score_clip {
            shaped.iter_mut().for_each(|x| *x = x.clamp(-c, c));
        }
        for ((s, r), x) in samples.iter_mut().zip(raw).zip(shaped) {
            (s.raw_score, s.score) = (r, x);
        }
        Ok(())
    }

    pub(crate) fn non_finite(&self, rollout: usize, what: String) -> Error {
        let step = self.state.step + 1;
        Error::Halted(format!(
            "rollout {rollout} (before optimizer step {step}): non-finite {what}"
        ))
    }

    /// Fills old/ref log-probs and values; returns the mean token entropy of the policy.
    fn logprobs(&self, samples: &mut [Sample], index: usize) -> Result<f64> {
        let (mut ent_sum, mut n) = (0f64, 0usize);
        for chunk in samples.chunks_mut(self.micro_rows.max(1)) {
            let rows: Vec<PromptCompletion> = chunk.iter().map(|s| s.ids.clone()).collect();
            let policy = self.forward(&self.policy, &rows, true)?;
            let reference = self.forward(&self.reference, &rows, false)?;
            for (i, s) in chunk.iter_mut().enumerate() {
                s.old_logp = policy.logp[i].clone();
                s.values = policy.values.get(i).cloned().unwrap_or_default();
                s.ref_logp = reference.logp[i].clone();
                ent_sum += policy.entropy[i].iter().map(|&e| f64::from(e)).sum::<f64>();
                n += policy.entropy[i].len();
            }
        }
        let all = samples
            .iter()
            .flat_map(|s| s.old_logp.iter().chain(&s.ref_logp).chain(&s.values));
        if all.into_iter().any(|x| !x.is_finite()) {
            return Err(self.non_finite(index, "log-prob or value in the rollout".into()));
        }
        Ok(ent_sum / n.max(1) as f64)
    }

    /// No-grad pass of `model` over completions at the sampling temperature; with `policy`,
    /// also values (PPO) and entropies. Only completion positions reach the LM head.
    fn forward(
        &self,
        model: &lm::CausalLm,
        rows: &[PromptCompletion],
        policy: bool,
    ) -> Result<Pass> {
        let frame = Frame::new(rows, self.tok.pad_id);
        let hidden = model.hidden_states(&frame.input)?.detach(); // (B, T, H)
        let picked = frame.gather(&hidden)?; // (N, H)
        let logits = (model.logits(&picked)?.to_dtype(DType::F32)? / self.cfg.temperature)?; // (N, V)
        let lp = lm::logprobs::token_logprobs(&logits, &frame.targets(hidden.device())?)?; // (N,)
        let mut pass = Pass {
            logp: frame.split(&lp)?,
            values: vec![],
            entropy: vec![],
        };
        if policy {
            if let Some(critic) = &self.critic {
                let v = critic.values(&picked, &frame)?.detach(); // (N,)
                pass.values = frame.split(&v)?;
            }
            pass.entropy = frame.split(&entropy(&logits)?)?;
        }
        Ok(pass)
    }
}

/// Entropy of the softmax of `logits` `(N, V)` at every position, `(N,)`:
/// `logsumexp(l) − Σ p l`.
fn entropy(logits: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?;
    let shifted = logits.broadcast_sub(&max)?;
    let e = shifted.exp()?;
    let z = e.sum_keepdim(D::Minus1)?;
    let p = e.broadcast_div(&z)?;
    let lse = z.log()?;
    (lse - (p * shifted)?.sum_keepdim(D::Minus1)?)?.squeeze(D::Minus1)
}

mod advantages;
