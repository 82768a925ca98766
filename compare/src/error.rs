//! Typed errors of the compare crate.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad row in a prompt file: file, 1-based line and what is wrong (naming the field).
    #[error("{path}:{line}: {reason}")]
    Data {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] lm::Error),
    #[error(transparent)]
    /// The reward model, or anything else the stage core reports.
    Stage(#[from] train::Error),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Labeling(#[from] labeling_ui::AppError),
    #[error("labeling database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
