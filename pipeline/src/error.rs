//! The pipeline's error type: what went wrong, named by the pipeline file and the stage.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting of the pipeline file (or a section of it) that cannot work.
    #[error("{file}: {reason}")]
    Config { file: String, reason: String },
    /// A setting (a flag, a data row) that cannot work, with what to do.
    #[error("{0}")]
    Invalid(String),
    /// A stage that failed while running.
    #[error("{file}: stage [{stage}]: {source}")]
    Stage {
        file: String,
        stage: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] lm::Error),
    #[error(transparent)]
    Train(#[from] train::Error),
    #[error(transparent)]
    Labeling(#[from] labeling_ui::AppError),
    #[error(transparent)]
    Compare(#[from] compare::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
