//! One error type for the crate. Client errors carry a message meant for the client; everything
//! else is logged in full and answered with a generic 500 so internals never leak.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// A bad row in an import, reported with its 1-based line number.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not signed in")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{}", describe_lines(.0))]
    Import(Vec<LineError>),
    /// An extractor rejected the request (bad JSON, wrong content type, body too large).
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe_lines(lines: &[LineError]) -> String {
    let shown: Vec<String> = lines
        .iter()
        .take(20)
        .map(|l| format!("line {}: {}", l.line, l.message))
        .collect();
    let more = lines.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    format!(
        "import rejected, nothing imported: {}{more}",
        shown.join("; ")
    )
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Import(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Rejected { status, .. } => *status,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<&'a [LineError]>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let error = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "internal server error".to_string()
        } else {
            self.to_string()
        };
        let lines = match &self {
            AppError::Import(lines) => Some(lines.as_slice()),
            _ => None,
        };
        (status, Json(ErrorBody { error, lines })).into_response()
    }
}

macro_rules! rejection {
    ($($t:ty),*) => {$(
        impl From<$t> for AppError {
            fn from(r: $t) -> Self {
                AppError::Rejected { status: r.status(), message: r.body_text() }
            }
        }
    )*};
}
rejection!(JsonRejection, BytesRejection, PathRejection, QueryRejection);
