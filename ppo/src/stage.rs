//! PPO / RLOO / GRPO as a `train::Stage`: `make_batch` makes a rollout from a micro-batch of
//! prompts (phases 1–4, in `rollout.rs`), `update_loss` trains on one of its minibatches
//! (phase 5, in `update.rs`); the loop does backward, clipping, the optimizer and logging
//! (phase 6).
use crate::config::PpoConfig;
use crate::critic::Critic;
use crate::math::{KlController, RunningMoments};
use crate::prompts::Prompt;
use crate::reward::Scorer;
use lm::logprobs::PromptCompletion;
use lm::{CausalLm, Tokenizer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use train::{Stage, StepOutput};

/// One sampled completion and what the update needs from its rollout. Per-token vectors have
/// one value per completion token.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Index into the prompts.
    pub prompt: usize,
    pub ids: PromptCompletion,
    pub text: String,
    /// Ended on EOS (not on `max_new_tokens`).
    pub finished: bool,
    /// The reward before shaping (the reward model's or command's number).
    pub raw_score: f64,
    /// After the EOS penalty, normalisation and clipping.
    pub score: f64,
    pub old_logp: Vec<f32>,
    pub ref_logp: Vec<f32>,
    /// PPO's values at rollout time (empty for RLOO/GRPO).
    pub values: Vec<f32>,
    pub advantages: Vec<f32>,
    pub returns: Vec<f32>,
}

/// A micro-batch's rollout: the loop's batch.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// 0-based count of rollouts made before this one (seeds its sampling and shuffles).
    pub index: usize,
    pub samples: Vec<Sample>,
    /// Rollout metrics, attached to every update made from it.
    pub metrics: BTreeMap<String, f64>,
}

/// What checkpoints carry besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpoState {
    pub kl: KlController,
    pub scores: RunningMoments,
    pub rollouts: usize,
    /// Optimizer steps completed.
    pub step: usize,
}

/// The stage.
pub struct PpoStage {
    pub policy: CausalLm,
    /// Frozen: a separate copy, or the policy with its LoRA adapters switched off.
    pub reference: CausalLm,
    /// PPO's value function; `None` for RLOO and GRPO.
    pub critic: Option<Critic>,
    pub scorer: Scorer,
    pub tok: Tokenizer,
    pub prompts: Vec<Prompt>,
    /// Prompts that lost tokens to `max_prompt_len`.
    pub truncated: usize,
    /// The policy's trainable variables (LoRA adapters or every weight).
    pub trainable: Vec<(String, candle_core::Var)>,
    pub cfg: PpoConfig,
    /// The trainer's seed.
    pub seed: u64,
    /// Completions per micro-batch in one update.
    pub micro_rows: usize,
    /// Optimizer steps per rollout.
    pub updates: usize,
    pub state: PpoState,
    /// Where `samples.jsonl` goes.
    pub out: PathBuf,
    /// Largest approximate KL of the current update's micro-batches (early stop).
    pub(crate) update_kl: f64,
    pub(crate) last_update: Option<Instant>,
}

impl PpoStage {
    /// A seed derived from the run's seed and a counter (SplitMix64's finaliser).
    pub(crate) fn derive_seed(&self, salt: u64, n: usize) -> u64 {
        let z = self
            .seed
            .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(n as u64);
        lm::dropout::mix64(z)
    }
}

impl Stage for PpoStage {
    type Batch = Rollout;

    fn num_examples(&self) -> usize {
        self.prompts.len()
    }

    fn make_batch(&mut self, indices: &[usize]) -> train::Result<Rollout> {
        self.rollout(indices)
    }

    /// Sampling is generation; scoring and the log-prob passes are forward passes.
    fn batch_phases(&self, batch: &Rollout) -> Vec<(cost::Phase, f64)> {
        use cost::Phase;
        let s = |k: &str| batch.metrics.get(k).copied().unwrap_or(0.0);
        vec![
            (Phase::Generation, s("time/generation_s")),
            (Phase::Forward, s("time/scoring_s") + s("time/logprobs_s")),
        ]
    }

    fn loss(&mut self, batch: &Rollout) -> train::Result<StepOutput> {
        self.update_loss(batch, 0)
    }

    fn updates_per_batch(&self) -> usize {
        self.updates
    }

    fn update_loss(&mut self, batch: &Rollout, update: usize) -> train::Result<StepOutput> {
        self.minibatch_loss(batch, update)
    }

    fn padded_shape(&self, batch: &Rollout, update: usize) -> Option<(usize, usize)> {
        Some(self.minibatch_shape(batch, update))
    }

    fn stop_batch_early(&mut self) -> bool {
        let kl = std::mem::take(&mut self.update_kl);
        self.cfg.early_stop_kl.is_some_and(|bound| kl > bound)
    }

    fn on_step_end(&mut self, global_step: usize) -> train::Result<()> {
        self.state.step = global_step;
        Ok(())
    }

    fn extra_state(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or_default()
    }

    fn restore_extra_state(&mut self, state: serde_json::Value) -> train::Result<()> {
        self.state = serde_json::from_value(state)
            .map_err(|e| train::Error::stage(format!("ppo state in checkpoint: {e}")))?;
        Ok(())
    }
}
