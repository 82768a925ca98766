//! The stage core: what every Rudder trainer (SFT, reward model, DPO, PPO) shares. Named
//! parameters, AdamW, LR schedules, gradient accumulation and clipping, atomic checkpoints,
//! `metrics.jsonl`, the generic loop [`run`] (whose backward adds activation-checkpointed
//! layers' gradients and whose training forwards are keyed for adapter dropout, for every
//! stage), the run flow around it ([`flow`]), the one [`Error`] type, and the loss helpers
//! ([`loss`]). A stage crate keeps its config, its data preparation and its loss.
//!
//! A run folder (`TrainerConfig::out`) ends up holding `checkpoint-<step>/`
//! folders plus a `latest` pointer (see [`checkpoint`]), `metrics.jsonl` and
//! `summary.json`. Stages write their own final model next to them.

pub mod checkpoint;
mod config;
pub mod data;
mod error;
pub mod flow;
mod grads;
pub mod inputs;
pub mod logps;
pub mod loss;
pub mod metrics;
mod optim;
mod optim_fused;
mod params;
pub mod plot;
mod schedule;
pub mod settings;
pub mod synthetic;
mod trainer;

pub use checkpoint::{
    load_checkpoint, load_latest_checkpoint, save_checkpoint, Checkpoint, CheckpointState,
    TrainerState,
};
pub use config::TrainerConfig;
pub use error::{Error, Result};
pub use flow::{
    begin, load_model, load_policy, load_reference, prepare, read_splits, required, save_policy,
    start, train_and_evaluate, train_and_save, trainable, write_record, Evaluated, PolicyOutcome,
    Prepared, RunFiles, StageSettings,
};
pub use grads::GradAccumulator;
pub use inputs::{check_inputs, Input};
pub use metrics::{LogEvent, MetricsWriter};
pub use optim::{AdamW, AdamWConfig, AdamWState, Moments};
pub use params::Params;
pub use plot::write_svg_plot;
pub use schedule::{LrSchedule, ScheduleKind};
pub use trainer::{run, Position, Stage, StepOutput, TrainSummary};
