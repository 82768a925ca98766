//! Kahneman–Tversky optimisation (`rudder kto`): unpaired rows `{"prompt", "completion",
//! "label"}` (or preference pairs split into a desirable and an undesirable row, as TRL does)
//! through `data::unpaired`; TRL 1.16's `KTOTrainer` loss (`kto`, `apo_zero_unpaired`) with the
//! KL estimate from mismatched prompt/completion pairs, `desirable_weight` /
//! `undesirable_weight`, a frozen, LoRA-base or precomputed reference, TRL's metrics, and
//! training through the one `train::run` loop.
pub mod config;
pub mod loss;
pub mod prepare;
pub mod run;
pub mod stage;

pub use config::{KtoConfig, KtoLoss};
pub use loss::{kl_estimate, kto_loss, metrics, KtoLogps};
pub use prepare::{kl_sources, load_rows, DataStats, KtoBatch, KtoRow, KtoSet};
pub use run::{run, train_kto, KtoOutcome};
pub use stage::KtoStage;
pub use train::{Error, Result};
