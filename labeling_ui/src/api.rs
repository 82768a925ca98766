//! HTTP handlers for the JSON API and the embedded page.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{self, Admin, CurrentUser, Role};
use crate::db::{Mode, ProjectInfo};
use crate::error::{AppError, Result};
use crate::export::{export_jsonl, ExportOptions};
use crate::import::{create_project, create_ranking_project, import_items, parse_jsonl};
use crate::queue::{load_shown, progress, Op, Outcome, ShownChoice, Submission};
use crate::ranking::RankingSubmission;
use crate::stats::{list_projects, project_stats};
use crate::AppState;

/// `Json` whose rejections (bad JSON, wrong content type, oversize body) become JSON 4xx errors.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct ApiPath<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct ApiQuery<T>(pub T);

pub async fn index() -> impl IntoResponse {
    Html(include_str!("../assets/index.html"))
}

pub async fn app_js() -> impl IntoResponse {
    static_asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    )
}

pub async fn ranking_js() -> impl IntoResponse {
    static_asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/ranking.js"),
    )
}

pub async fn app_css() -> impl IntoResponse {
    static_asset("text/css; charset=utf-8", include_str!("../assets/app.css"))
}

fn static_asset(mime: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, mime)], body).into_response()
}

pub async fn not_found() -> AppError {
    AppError::NotFound("route".into())
}

pub async fn method_not_allowed() -> AppError {
    AppError::Rejected {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed".into(),
    }
}

#[derive(Deserialize)]
pub struct LoginBody {
    name: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response> {
    let (token, user) = auth::login(&state, &body.name, &body.password).await?;
    let cookie = auth::session_cookie(&token, state.secure_cookies);
    let cookie = HeaderValue::from_str(&cookie).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(([(header::SET_COOKIE, cookie)], Json(user)).into_response())
}

pub async fn logout(
    State(state): State<AppState>,
    _user: CurrentUser,
    req: Request,
) -> Result<Response> {
    let (parts, _) = req.into_parts();
    if let Some(token) = auth::cookie_token(&parts) {
        auth::logout(&state, &token).await?;
    }
    let cookie = HeaderValue::from_str(&auth::session_cookie("", state.secure_cookies))
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(([(header::SET_COOKIE, cookie)], Json(json!({ "ok": true }))).into_response())
}

pub async fn me(user: CurrentUser) -> Json<CurrentUser> {
    Json(user)
}

pub async fn projects(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Value>> {
    let scope = (user.role != Role::Admin).then_some(user.id);
    Ok(Json(
        json!({ "projects": list_projects(&state.pool, scope).await? }),
    ))
}

#[derive(Deserialize)]
pub struct NewProject {
    name: String,
    #[serde(default = "one")]
    overlap: i64,
    #[serde(default = "pairwise")]
    mode: Mode,
    /// Responses per ranking (ranking mode).
    #[serde(default)]
    k: Option<i64>,
}

fn pairwise() -> Mode {
    Mode::Pairwise
}

fn one() -> i64 {
    1
}

pub async fn new_project(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(body): ApiJson<NewProject>,
) -> Result<(StatusCode, Json<Value>)> {
    let id = match (body.mode, body.k) {
        (Mode::Pairwise, None) => create_project(&state.pool, &body.name, body.overlap).await?,
        (Mode::Pairwise, Some(_)) => {
            return Err(AppError::BadRequest(
                "k applies to ranking projects only".into(),
            ))
        }
        (Mode::Ranking, k) => {
            let k = k.ok_or_else(|| AppError::BadRequest("ranking mode needs k (3-9)".into()))?;
            create_ranking_project(&state.pool, &body.name, body.overlap, k).await?
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "name": body.name.trim() })),
    ))
}

/// Body: the JSONL file itself (any text content type).
pub async fn import(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(project): ApiPath<String>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Json<Value>> {
    let text = body.map_err(|r| AppError::Rejected {
        status: r.status(),
        message: r.body_text(),
    })?;
    let items = parse_jsonl(&text)?;
    let report = import_items(&state.pool, &project, items).await?;
    Ok(Json(json!(report)))
}

/// The queue operation that hands this labeler their next unit of work in the project.
fn next_op(user: &CurrentUser, info: &ProjectInfo) -> Op {
    match (info.mode, info.k) {
        (Mode::Ranking, Some(k)) => Op::NextRanking {
            user_id: user.id,
            project_id: info.id,
            k,
        },
        _ => Op::Next {
            user_id: user.id,
            project_id: info.id,
        },
    }
}

pub async fn next(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<Value>> {
    let info = state.project(&project).await?;
    let assigned = state.writer.run(next_op(&user, &info)).await?;
    Ok(Json(next_view(&state, &user, &info, assigned).await?))
}

/// The `next` answer: the comparison (or ranking) to show, or `done`, and the labeler's
/// progress.
async fn next_view(
    state: &AppState,
    user: &CurrentUser,
    info: &ProjectInfo,
    assigned: Outcome,
) -> Result<Value> {
    let Outcome::Assigned(assigned) = assigned else {
        return Err(AppError::Internal(
            "writer answered next with the wrong outcome".into(),
        ));
    };
    Ok(match (assigned, info.mode) {
        (Some(id), Mode::Pairwise) => {
            let (shown, progress) = load_shown(&state.pool, id).await?;
            json!({ "done": false, "mode": info.mode, "comparison": shown, "progress": progress })
        }
        (Some(id), Mode::Ranking) => {
            let (shown, progress) = crate::ranking::load_shown(&state.pool, id).await?;
            json!({ "done": false, "mode": info.mode, "ranking": shown, "progress": progress })
        }
        (None, _) => {
            let progress = progress(&state.pool, user.id, info.id).await?;
            json!({ "done": true, "mode": info.mode, "progress": progress })
        }
    })
}

#[derive(Deserialize)]
pub struct LabelBody {
    assignment_id: i64,
    choice: ShownChoice,
    client_id: String,
    #[serde(default)]
    rationale: Option<String>,
    /// When set, the answer also carries `next` for this project (saves a round trip).
    #[serde(default)]
    project: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<LabelBody>,
) -> Result<Json<Value>> {
    check_client_id(&body.client_id)?;
    let rationale = body.rationale.filter(|r| !r.trim().is_empty());
    if rationale.as_ref().is_some_and(|r| r.len() > 10_000) {
        return Err(AppError::BadRequest(
            "rationale is limited to 10000 bytes".into(),
        ));
    }
    let info = match &body.project {
        Some(p) => Some(state.project(p).await?),
        None => None,
    };
    let mut ops = vec![Op::Submit(Submission {
        user_id: user.id,
        assignment_id: body.assignment_id,
        client_id: body.client_id,
        choice: body.choice,
        rationale,
    })];
    ops.extend(info.as_ref().map(|info| next_op(&user, info)));
    submitted(&state, &user, info, ops).await
}

/// Runs a submission (plus the optional `next`) and builds the answer.
async fn submitted(
    state: &AppState,
    user: &CurrentUser,
    info: Option<ProjectInfo>,
    ops: Vec<Op>,
) -> Result<Json<Value>> {
    let mut results = state.writer.run_many(ops).await.into_iter();
    let Some(Outcome::Submitted {
        label_id,
        duplicate,
    }) = results.next().transpose()?
    else {
        return Err(AppError::Internal(
            "writer answered submit with the wrong outcome".into(),
        ));
    };
    let mut answer = json!({ "label_id": label_id, "duplicate": duplicate });
    if let (Some(info), Some(next)) = (info, results.next()) {
        answer["next"] = next_view(state, user, &info, next?).await?;
    }
    Ok(Json(answer))
}

/// Counts characters, not bytes, as the README promises: 100 "é" (200 bytes) are fine.
fn check_client_id(client_id: &str) -> Result<()> {
    let n = client_id.chars().count();
    if !(1..=100).contains(&n) {
        return Err(AppError::BadRequest(format!(
            "client_id must be 1-100 characters (got {n}); send e.g. a UUID per click"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct RankingBody {
    assignment_id: i64,
    /// Tiers best first, each a list of positions as shown (0-based); a tier of two or more
    /// is a tie.
    ranking: Vec<Vec<usize>>,
    /// Positions flagged unacceptable (they must fill the last tiers).
    #[serde(default)]
    unacceptable: Vec<usize>,
    client_id: String,
    #[serde(default)]
    project: Option<String>,
}

pub async fn submit_ranking(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<RankingBody>,
) -> Result<Json<Value>> {
    check_client_id(&body.client_id)?;
    if body.ranking.len() > 16 || body.ranking.iter().flatten().count() > 16 {
        return Err(AppError::BadRequest(
            "a ranking has at most 16 responses".into(),
        ));
    }
    let info = match &body.project {
        Some(p) => Some(state.project(p).await?),
        None => None,
    };
    let mut ops = vec![Op::SubmitRanking(RankingSubmission {
        user_id: user.id,
        assignment_id: body.assignment_id,
        client_id: body.client_id,
        tiers: body.ranking,
        unacceptable: body.unacceptable,
    })];
    ops.extend(info.as_ref().map(|info| next_op(&user, info)));
    submitted(&state, &user, info, ops).await
}

pub async fn undo(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<Value>> {
    let info = state.project(&project).await?;
    let (user_id, project_id) = (user.id, info.id);
    let op = match info.mode {
        Mode::Pairwise => Op::Undo {
            user_id,
            project_id,
        },
        Mode::Ranking => Op::UndoRanking {
            user_id,
            project_id,
        },
    };
    match state.writer.run(op).await? {
        Outcome::Undone(id) => Ok(Json(json!({ "assignment_id": id }))),
        _ => Err(AppError::Internal(
            "writer answered undo with the wrong outcome".into(),
        )),
    }
}

pub async fn my_progress(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<Value>> {
    let project_id = state.project(&project).await?.id;
    Ok(Json(json!(
        progress(&state.pool, user.id, project_id).await?
    )))
}

pub async fn stats(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<Value>> {
    Ok(Json(json!(project_stats(&state.pool, &project).await?)))
}

pub async fn export(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(project): ApiPath<String>,
    ApiQuery(opts): ApiQuery<ExportOptions>,
) -> Result<Response> {
    let (text, _) = export_jsonl(&state.pool, &project, opts).await?;
    let safe: String = project
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    let disposition = format!("attachment; filename=\"{safe}-prefs.jsonl\"");
    let disposition =
        HeaderValue::from_str(&disposition).map_err(|e| AppError::Internal(e.to_string()))?;
    let ctype = HeaderValue::from_static("application/x-ndjson");
    Ok((
        [
            (header::CONTENT_TYPE, ctype),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        text,
    )
        .into_response())
}
