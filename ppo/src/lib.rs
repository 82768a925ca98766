//! Policy optimisation against a reward (`rudder ppo`): PPO with a value head, GAE and a
//! per-token KL penalty, or the critic-free RLOO, GRPO (TRL's loss types) and REINFORCE++;
//! rollouts sampled with the KV cache, scored by a reward model or an external command, and
//! trained through the one `train::run` loop (one rollout per batch, `ppo_epochs ×
//! minibatches` optimizer steps from it).
pub mod config;

pub mod loss;
pub mod math;

pub use config::{Algo, ImportanceSamplingLevel, KlEstimator, LossType, PpoConfig, ScaleRewards};
pub use train::{Error, Result};
pub mod critic;
pub mod frame;
pub mod prompts;
pub mod reward;
mod rollout;
pub mod run;
pub mod stage;
mod update;

pub use critic::Critic;
pub use prompts::{load_prompts, Prompt};
pub use reward::{Item, RuleFn, Scorer};
pub use run::{build_stage, run, train_ppo, train_ppo_with, PpoOutcome};
pub use stage::{PpoStage, PpoState, Rollout, Sample};
