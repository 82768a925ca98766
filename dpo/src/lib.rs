//! Direct preference optimisation (`rudder dpo`): TRL's preference formats through
//! `data::prefs`, every preference loss of TRL 1.16's DPOTrainer (sigmoid/cDPO, IPO, hinge,
//! robust, EXO, NCA, BCO, SPPO, AOT, APO, DiscoPOP, sft, sigmoid_norm) plus SimPO, alone or
//! weighted together (MPO), with an optional RPO NLL term and soft ties, a frozen, LoRA-base or
//! precomputed reference, TRL's metrics, and training through the one `train::run` loop.
pub mod batch;
pub mod config;
pub mod loss;
pub mod prepare;
pub mod run;
pub mod stage;

pub use batch::{sequence_logps, PairBatch};
pub use config::{DpoConfig, LossType, Ties};
pub use loss::{pair_losses, PairLogps};
pub use prepare::{load_pairs, DataStats};
pub use run::{run, train_dpo, DpoOutcome};
pub use stage::{DpoStage, PairSet};
pub use train::{Error, Result};
