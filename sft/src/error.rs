//! The SFT crate's error type.
use std::path::PathBuf;

/// Everything that can go wrong preparing or running supervised fine-tuning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad data rows, the model, its tokenizer or template (these name file and line).
    #[error(transparent)]
    Lm(#[from] lm::Error),
    #[error(transparent)]
    Train(#[from] train::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A config value that cannot work, found before any tensor is touched.
    #[error("sft config: field `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("{path}: no usable rows ({skipped} skipped as bad)")]
    NoRows { path: PathBuf, skipped: usize },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
