//! The crate's error type.
use std::path::PathBuf;

/// Everything that can go wrong building, training, scoring or saving a reward model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading the backbone, tokenizing, reading or writing files (names the file and line).
    #[error(transparent)]
    Lm(#[from] lm::Error),
    #[error(transparent)]
    Train(#[from] train::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A bad setting, named by its config field.
    #[error("config field `{field}`: {reason}")]
    Config { field: String, reason: String },
    /// The model folder's head does not fit the backbone.
    #[error("{path}: tensor `{name}`: {reason}")]
    Head {
        path: PathBuf,
        name: String,
        reason: String,
    },
    /// A data row that cannot be used, with its file and line.
    #[error("{path}:{line}: {reason}")]
    Data {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("invalid argument: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn config(field: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<Error> for train::Error {
    /// Stage errors travel through the training loop boxed; `Train` errors come back unwrapped.
    fn from(e: Error) -> Self {
        match e {
            Error::Train(t) => t,
            other => train::Error::stage(other),
        }
    }
}
