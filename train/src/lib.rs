//! Shared training machinery for every Rudder stage (SFT, reward model, DPO, PPO):
//! named parameters, AdamW, LR schedules, gradient accumulation and clipping,
//! atomic checkpoints, `metrics.jsonl`, and the generic loop [`run`].
//!
//! A run folder (`TrainerConfig::out`) ends up holding `checkpoint-<step>/`
//! folders plus a `latest` pointer (see [`checkpoint`]), `metrics.jsonl` and
//! `summary.json`. Stages write their own final model next to them.

pub mod checkpoint;
mod config;
pub mod cost;
pub mod data;
mod error;
mod grads;
pub mod metrics;
mod optim;
mod optim_fused;
mod params;
pub mod plot;
mod schedule;
mod trainer;

pub use checkpoint::{
    load_checkpoint, load_latest_checkpoint, save_checkpoint, Checkpoint, CheckpointState,
    TrainerState,
};
pub use config::TrainerConfig;
pub use error::{Error, Result};
pub use grads::GradAccumulator;
pub use metrics::{LogEvent, MetricsWriter};
pub use optim::{AdamW, AdamWConfig, AdamWState, Moments};
pub use params::Params;
pub use plot::write_svg_plot;
pub use schedule::{LrSchedule, ScheduleKind};
pub use trainer::{run, Position, Stage, StepOutput, TrainSummary};
