//! Rudder's labeling web app: pairwise preference labeling in the browser, backed by SQLite.
//!
//! [`app`] builds the axum router over an [`AppState`]; [`cli`] holds the `rudder label`
//! subcommands. See `labeling_ui/README.md` for the JSON API and data formats.

pub mod agreement;
mod api;
pub mod auth;
pub mod cli;
pub mod db;
pub mod error;
pub mod export;
pub mod import;
pub mod queue;
pub mod ranking;
pub mod ranking_export;
pub mod stats;
mod writer;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sqlx::SqlitePool;

pub use db::Mode;
pub use error::{AppError, LineError, Result};
pub use export::{export_jsonl, ExportOptions, Ties};
pub use import::{
    create_project, create_ranking_project, import_items, import_items_in, parse_jsonl, ImportItem,
    ImportReport, Message, Prompt,
};

/// JSON bodies are small; only the import route accepts a whole file.
const BODY_LIMIT: usize = 64 * 1024;
const IMPORT_LIMIT: usize = 64 * 1024 * 1024;

/// Shared state: the database pool, the group-commit writer and the session cache.
#[derive(Clone)]
pub struct AppState {
    pub pool: SqlitePool,
    writer: writer::Writer,
    sessions: Arc<auth::SessionCache>,
    /// Project name -> settings. Projects are never renamed, deleted or reconfigured, so
    /// entries never go stale; this saves a query on every labeling request.
    projects: Arc<std::sync::RwLock<std::collections::HashMap<String, db::ProjectInfo>>>,
    /// Adds `Secure` to the session cookie; turn on behind TLS.
    pub secure_cookies: bool,
}

impl AppState {
    /// Wraps a migrated pool and starts the writer task (call inside a Tokio runtime).
    pub fn new(pool: SqlitePool) -> Self {
        let gate = db::WriteGate::default();
        tokio::spawn(db::checkpointer(pool.clone(), gate.clone()));
        // The first sign-in of a missing user would otherwise also pay for making the dummy.
        tokio::task::spawn_blocking(|| auth::dummy_hash().len());
        AppState {
            writer: writer::Writer::spawn(pool.clone(), gate),
            pool,
            sessions: Arc::default(),
            projects: Arc::default(),
            secure_cookies: false,
        }
    }

    /// A project's settings, from the cache or the database.
    pub(crate) async fn project(&self, name: &str) -> Result<db::ProjectInfo> {
        if let Some(hit) = self.projects.read().ok().and_then(|m| m.get(name).copied()) {
            return Ok(hit);
        }
        let found = db::project_info(&self.pool, name).await?;
        if let Ok(mut m) = self.projects.write() {
            m.insert(name.to_owned(), found);
        }
        Ok(found)
    }
}

/// The whole app: page, assets and JSON API.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/login", post(api::login))
        .route("/logout", post(api::logout))
        .route("/me", get(api::me))
        .route("/projects", get(api::projects).post(api::new_project))
        .route(
            "/projects/{project}/import",
            post(api::import).layer(DefaultBodyLimit::max(IMPORT_LIMIT)),
        )
        .route("/projects/{project}/next", post(api::next))
        .route("/projects/{project}/undo", post(api::undo))
        .route("/projects/{project}/progress", get(api::my_progress))
        .route("/projects/{project}/stats", get(api::stats))
        .route("/projects/{project}/export", get(api::export))
        .route("/labels", post(api::submit))
        .route("/rankings", post(api::submit_ranking));
    Router::new()
        .route("/", get(api::index))
        .route("/assets/app.js", get(api::app_js))
        .route("/assets/ranking.js", get(api::ranking_js))
        .route("/assets/app.css", get(api::app_css))
        .nest("/api", api)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(security_headers))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}

/// CSP forbids inline script, so even a missed escape cannot run injected markup.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
               object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    AppError::Internal("handler panicked".into()).into_response()
}
