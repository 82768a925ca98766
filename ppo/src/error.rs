//! The PPO crate's error type.
use std::path::PathBuf;

/// Everything that can go wrong preparing or running PPO.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad data rows, the model, its tokenizer or template (these name file and line).
    #[error(transparent)]
    Lm(Box<lm::Error>),
    #[error(transparent)]
    Train(Box<train::Error>),
    #[error(transparent)]
    Reward(Box<reward_model::Error>),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A config value that cannot work, found before any tensor is touched.
    #[error("ppo config: field `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    /// A bad prompts file row (names the file, the line and the field).
    #[error("{path}:{line}: field `{field}`: {reason}")]
    Row {
        path: PathBuf,
        line: usize,
        field: &'static str,
        reason: String,
    },
    /// A non-finite number where training cannot continue; names the step.
    #[error("rollout {rollout} (before optimizer step {step}): non-finite {what}")]
    NonFinite {
        rollout: usize,
        step: usize,
        what: String,
    },
    /// The external `--reward-cmd` failed or answered badly.
    #[error("reward command `{cmd}`: {reason}")]
    RewardCmd { cmd: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            field,
            reason: reason.into(),
        }
    }
}

// Boxed: `lm::Error` and `train::Error` are large, and every `Result` here would carry them.
impl From<lm::Error> for Error {
    fn from(e: lm::Error) -> Self {
        Error::Lm(Box::new(e))
    }
}

impl From<train::Error> for Error {
    fn from(e: train::Error) -> Self {
        Error::Train(Box::new(e))
    }
}

impl From<reward_model::Error> for Error {
    fn from(e: reward_model::Error) -> Self {
        Error::Reward(Box::new(e))
    }
}
