//! The crate's single error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("json error in {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid config: {0}")]
    Config(String),
    #[error("duplicate parameter name `{0}`")]
    DuplicateParam(String),
    #[error("unknown or missing parameter `{0}`")]
    MissingParam(String),
    #[error("parameter `{name}`: expected shape {expected:?}, got {got:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("gradient set has {got} entries but there are {expected} parameters")]
    GradCountMismatch { expected: usize, got: usize },
    #[error("non-finite loss ({loss}) at step {step}, micro-batch {micro_batch}")]
    NonFiniteLoss {
        step: usize,
        micro_batch: usize,
        loss: f32,
    },
    #[error("non-finite gradient norm ({norm}) at step {step}")]
    NonFiniteGradNorm { step: usize, norm: f32 },
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// An error raised by a [`crate::Stage`] implementation (model crate, tokenizer, ...).
    #[error("stage error: {0}")]
    Stage(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// Wraps any stage-side error so stages can use `?` via `.map_err(Error::stage)`.
    pub fn stage(e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Error::Stage(e.into())
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn json(path: &Path) -> impl FnOnce(serde_json::Error) -> Error + '_ {
        move |source| Error::Json {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn checkpoint(path: &Path, msg: impl Into<String>) -> Error {
        Error::Checkpoint {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;
