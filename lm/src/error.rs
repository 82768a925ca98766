//! The one error type of the model core.
use std::path::PathBuf;

/// Everything that can go wrong loading, running or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: field `{field}`: {reason}")]
    Config {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("unsupported architecture `{0}` (supported: Llama, Mistral, Qwen2, Qwen3, GPT-2, Mixtral, Qwen2-MoE, Qwen3-MoE)")]
    UnsupportedArchitecture(String),
    #[error("{path}: tensor `{name}`: {reason}")]
    Weight {
        path: PathBuf,
        name: String,
        reason: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("model `{spec}` not found: {reason}")]
    NotFound { spec: String, reason: String },
    #[error("{path}:{line}: {reason}")]
    Data {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
