//! Reward-model stage (issue #5): a scalar `score` head on a decoder's last non-padding token
//! (transformers' `*ForSequenceClassification`, `num_labels = 1`), trained with TRL's pairwise
//! Bradley–Terry loss through `train::run`, evaluated on held-out pairs, saved as a folder
//! transformers loads, and used to score `{"prompt", "completion"}` rows.
//!
//! Library API for later stages (PPO, compare): [`RewardModel::load`], [`RewardModel::score`].
pub mod config;
pub mod eval;
pub mod loss;
pub mod model;
pub mod pairs;
pub mod run;
pub mod save;
pub mod score_rows;
pub mod stage;

pub use config::RewardConfig;
pub use eval::evaluate_pairs;
pub use loss::{batch_metrics, pairwise_loss};
pub use model::{reward_index, HeadInit, RewardModel, SCORE_WEIGHT};
pub use pairs::{group_indices, load_pairs, Pair, PairData};
pub use run::{build_stage, run, train_reward, TrainOutcome};
pub use stage::{PairBatch, RewardStage};
pub use train::{Error, Result};
