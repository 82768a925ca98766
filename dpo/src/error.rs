//! The DPO crate's error type.
use std::path::PathBuf;

/// Everything that can go wrong preparing or running DPO.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad data rows, the model, its tokenizer or template (these name file and line).
    #[error(transparent)]
    Lm(Box<lm::Error>),
    #[error(transparent)]
    Train(Box<train::Error>),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A config value that cannot work, found before any tensor is touched.
    #[error("dpo config: field `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("{path}: no usable pairs ({skipped} skipped as bad, {dropped} dropped as too long, {ties} ties dropped)")]
    NoPairs {
        path: PathBuf,
        skipped: usize,
        dropped: usize,
        ties: usize,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Cache { path: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
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
