//! Users, passwords (argon2), cookie sessions, and the CSRF check on state-changing requests.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use crate::db::now_ms;
use crate::error::{AppError, Result};
use crate::AppState;

pub const SESSION_COOKIE: &str = "rudder_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Labeler,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Labeler => "labeler",
            Role::Admin => "admin",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        match s {
            "labeler" => Ok(Role::Labeler),
            "admin" => Ok(Role::Admin),
            other => Err(AppError::Internal(format!("unknown role in db: {other}"))),
        }
    }
}

/// The signed-in user, resolved from the session cookie.
#[derive(Debug, Clone, Serialize)]
pub struct CurrentUser {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub csrf_token: String,
    #[serde(skip)]
    expires_at: i64,
}

/// Like [`CurrentUser`] but only admins get through.
pub struct Admin(pub CurrentUser);

/// Sessions are authoritative in SQLite; this cache saves a query per request on the hot path.
#[derive(Default)]
pub struct SessionCache(RwLock<HashMap<String, CurrentUser>>);

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(buf.as_mut_slice());
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hash_password(password: &str) -> Result<String> {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    let salt =
        SaltString::encode_b64(&bytes).map_err(|e| AppError::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("argon2: {e}")))
}

/// Creates a user with a fresh random password and returns that password (shown once, never
/// stored in clear).
pub async fn add_user(pool: &SqlitePool, name: &str, role: Role) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(AppError::BadRequest(
            "user name must be 1-64 characters".into(),
        ));
    }
    let password: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    let (role, now) = (role.as_str(), now_ms());
    let res = sqlx::query!(
        "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
        name,
        role,
        hash,
        now
    )
    .execute(pool)
    .await;
    match res {
        Ok(_) => Ok(password),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(AppError::Conflict(format!("user '{name}' already exists")))
        }
        Err(e) => Err(e.into()),
    }
}

/// A hash of a password nobody has, with the same parameters as real ones (computed once).
/// Sign-in verifies against it when the user does not exist, so a missing user costs the same
/// argon2 run as a wrong password and timings do not reveal which accounts exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        // A fixed salt is fine: this hash only has to cost the same to verify, never to match.
        let salt = SaltString::encode_b64(b"rudder-no-user!!").ok();
        salt.and_then(|salt| {
            Argon2::default()
                .hash_password(b"no such user", &salt)
                .ok()
                .map(|h| h.to_string())
        })
        .unwrap_or_default()
    })
}

/// Runs argon2 on a blocking thread: `stored` is the user's hash, or `None` for a missing user
/// (then the dummy hash is checked, and the answer is always false).
async fn password_matches(stored: Option<String>, password: &str) -> Result<bool> {
    let pw = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let (hash, real) = match &stored {
            Some(h) => (h.as_str(), true),
            None => (dummy_hash(), false),
        };
        let ok = PasswordHash::new(hash)
            .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        ok && real
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))
}

/// Checks the password and opens a session. Returns the cookie token and the user.
pub async fn login(state: &AppState, name: &str, password: &str) -> Result<(String, CurrentUser)> {
    let row = sqlx::query!(
        r#"SELECT id AS "id!", role, password_hash FROM users WHERE name = ?"#,
        name
    )
    .fetch_optional(&state.pool)
    .await?;
    let stored = row.as_ref().map(|r| r.password_hash.clone());
    let row = match (password_matches(stored, password).await?, row) {
        (true, Some(row)) => row,
        _ => {
            return Err(AppError::Rejected {
                status: axum::http::StatusCode::UNAUTHORIZED,
                message: "wrong user name or password".into(),
            })
        }
    };
    let (token, csrf, expires_at) = open_session(&state.pool, row.id).await?;
    let user = CurrentUser {
        id: row.id,
        name: name.to_owned(),
        role: Role::parse(&row.role)?,
        csrf_token: csrf,
        expires_at,
    };
    Ok((token, user))
}

/// Stores a new session for `user_id`; returns (cookie token, CSRF token, expiry).
async fn open_session(pool: &SqlitePool, user_id: i64) -> Result<(String, String, i64)> {
    // Sign-in is rare, so it is a fine moment to drop expired sessions.
    let now = now_ms();
    sqlx::query!("DELETE FROM sessions WHERE expires_at <= ?", now)
        .execute(pool)
        .await?;
    let (token, csrf) = (random_hex(32), random_hex(16));
    let (token_hash, expires_at) = (hash_token(&token), now_ms() + SESSION_TTL_MS);
    sqlx::query!(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at) VALUES (?, ?, ?, ?)",
        token_hash,
        user_id,
        csrf,
        expires_at
    )
    .execute(pool)
    .await?;
    Ok((token, csrf, expires_at))
}

/// Ends the session behind `token`.
pub async fn logout(state: &AppState, token: &str) -> Result<()> {
    let token_hash = hash_token(token);
    if let Ok(mut cache) = state.sessions.0.write() {
        cache.remove(&token_hash);
    }
    sqlx::query!("DELETE FROM sessions WHERE token_hash = ?", token_hash)
        .execute(&state.pool)
        .await?;
    Ok(())
}

/// `Set-Cookie` value for a session; `token = ""` clears it.
pub fn session_cookie(token: &str, secure: bool) -> String {
    let max_age = if token.is_empty() {
        0
    } else {
        SESSION_TTL_MS / 1000
    };
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    )
}

/// The session token from the request's `Cookie` header, if any.
pub fn cookie_token(parts: &Parts) -> Option<String> {
    let header = parts.headers.get(header::COOKIE)?.to_str().ok()?;
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == SESSION_COOKIE && !v.is_empty()).then(|| v.to_owned())
    })
}

async fn resolve(state: &AppState, token: &str) -> Result<CurrentUser> {
    let token_hash = hash_token(token);
    let now = now_ms();
    let cached = state
        .sessions
        .0
        .read()
        .ok()
        .and_then(|c| c.get(&token_hash).cloned());
    if let Some(user) = cached.filter(|u| u.expires_at > now) {
        return Ok(user);
    }
    let row = sqlx::query!(
        r#"SELECT u.id AS "id!", u.name, u.role, s.csrf_token, s.expires_at
           FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.token_hash = ? AND s.expires_at > ?"#,
        token_hash,
        now
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or(AppError::Unauthorized)?;
    let user = CurrentUser {
        id: row.id,
        name: row.name,
        role: Role::parse(&row.role)?,
        csrf_token: row.csrf_token,
        expires_at: row.expires_at,
    };
    if let Ok(mut cache) = state.sessions.0.write() {
        cache.insert(token_hash, user.clone());
    }
    Ok(user)
}

/// Constant-time comparison so the CSRF token cannot be guessed byte by byte from timings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = cookie_token(parts).ok_or(AppError::Unauthorized)?;
        let user = resolve(state, &token).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !sent.is_some_and(|s| same(s, &user.csrf_token)) {
                return Err(AppError::Forbidden("missing or wrong CSRF token"));
            }
        }
        Ok(user)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if user.role != Role::Admin {
            return Err(AppError::Forbidden("admins only"));
        }
        Ok(Admin(user))
    }
}
