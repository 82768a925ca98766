//! Supervised fine-tuning (`rudder sft`): TRL's SFT data formats and Alpaca, the loss on
//! completion / assistant tokens, packing, full or LoRA training through `train::run`, and a
//! model folder (or PEFT adapter) at the end.
pub mod batch;
pub mod config;
pub mod error;
pub mod run;
pub mod stage;
pub mod tokenize;

pub use batch::{pack, SftBatch};
pub use config::SftConfig;
pub use error::{Error, Result};
pub use run::{load_samples, train_sft, SftOutcome};
pub use stage::{batch_nll, into_rows, target_logprobs, SftStage};
pub use tokenize::{encode, prepare, DataStats, Sample};
