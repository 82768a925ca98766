//! Supervised fine-tuning (`rudder sft`): TRL's SFT data formats and Alpaca, the loss on
//! completion / assistant tokens, packing, full or LoRA training through `train::run`, and a
//! model folder (or PEFT adapter) at the end.
pub mod batch;
pub mod config;
pub mod loss;
pub mod run;
pub mod stage;
pub mod tokenize;

pub use batch::{pack, SftBatch};
pub use config::SftConfig;
pub use loss::{batch_nll, sft_loss, target_logprobs};
pub use run::{load_samples, run, train_sft, SftOutcome};
pub use stage::{into_rows, SftStage};
pub use tokenize::{encode, prepare, DataStats, Sample};
pub use train::{Error, Result};
