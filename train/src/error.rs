//! The one error type of the loop and of every stage (SFT, reward model, DPO, PPO): a stage
//! crate re-exports it, so an error travels from data preparation through the loop to the
//! binary unchanged, naming the file, line, field or setting.

use std::path::{Path, PathBuf};

/// Everything that can go wrong preparing or running a training stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The model, its tokenizer or chat template, or a data row (these name file and line).
    /// Boxed: `lm::Error` is large and every `Result` here would carry it.
    #[error(transparent)]
    Lm(Box<lm::Error>),
    /// A model that could not be loaded, named as the user gave it.
    #[error("loading model `{spec}`: {source}")]
    Model {
        spec: String,
        source: Box<lm::Error>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A loop setting it cannot run with.
    #[error("invalid config: {0}")]
    Config(String),
    /// A settings file or section that cannot be read: names the file, the stage and the key.
    #[error("{0}")]
    Settings(String),
    /// A stage setting that cannot work, found before any tensor is touched.
    #[error("{section} config: field `{field}`: {reason}")]
    Setting {
        section: &'static str,
        field: String,
        reason: String,
    },
    /// A model or file a setting names that is not there, found before anything loads: `by`
    /// is the flag or field (`--data`, `[sft] field `data``).
    #[error("{by}: {reason}")]
    Input { by: String, reason: String },
    /// A data row that cannot be used: its file, its line (from 1) and what is wrong.
    #[error("{path}:{line}: {reason}")]
    Row {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A file that cannot be used as a whole (no usable rows, a cache or a tensor that does
    /// not fit).
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// A call that breaks the stage's own rules (an index out of range, an empty row).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Training cannot go on (a non-finite reward, a failing reward command); says where.
    #[error("{0}")]
    Halted(String),
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
    /// Any other error raised by a [`crate::Stage`] implementation.
    #[error("stage error: {0}")]
    Stage(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl From<lm::Error> for Error {
    fn from(e: lm::Error) -> Self {
        Error::Lm(Box::new(e))
    }
}

impl Error {
    /// Wraps any other error so stages can use `?` via `.map_err(Error::stage)`.
    pub fn stage(e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Error::Stage(e.into())
    }

    /// A bad stage setting: `section` is the stage (`sft`, `dpo`, ...), `field` its config key.
    pub fn setting(section: &'static str, field: &str, reason: impl Into<String>) -> Self {
        Error::Setting {
            section,
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// `.map_err(Error::io(path))`: an I/O error naming the path.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// `.map_err(Error::json(path))`: a JSON error naming the path.
    pub fn json(path: &Path) -> impl FnOnce(serde_json::Error) -> Error + '_ {
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

/// Result alias used throughout the loop and the stages.
pub type Result<T> = std::result::Result<T, Error>;
