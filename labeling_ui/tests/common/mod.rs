//! Test helpers: a cookie-keeping client that drives the router with `oneshot`.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use labeling_ui::auth::{add_user, Role};
use labeling_ui::{app, AppState};
use serde_json::Value;
use sqlx::SqlitePool;
use tower::ServiceExt;

pub struct Client {
    pub app: Router,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl Client {
    pub fn anonymous(app: Router) -> Self {
        Client {
            app,
            cookie: None,
            csrf: None,
        }
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        ctype: Option<&str>,
        body: String,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, c);
        }
        if let Some(t) = &self.csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(ct) = ctype {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).expect("request"))
            .await
            .expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.raw(Method::GET, path, None, String::new()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.raw(
            Method::POST,
            path,
            Some("application/json"),
            body.to_string(),
        )
        .await
    }

    /// Signs in and keeps the session cookie and CSRF token.
    pub async fn login(app: Router, name: &str, password: &str) -> Self {
        let mut c = Client::anonymous(app);
        let r = c
            .post(
                "/api/login",
                serde_json::json!({ "name": name, "password": password }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let set = r
            .headers
            .get(header::SET_COOKIE)
            .expect("cookie")
            .to_str()
            .expect("ascii");
        c.cookie = Some(set.split(';').next().expect("pair").to_owned());
        c.csrf = Some(r.json()["csrf_token"].as_str().expect("csrf").to_owned());
        c
    }
}

/// App over `pool` with one admin; returns the router and the admin's client.
pub async fn setup(pool: SqlitePool) -> (Router, Client) {
    let router = app(AppState::new(pool.clone()));
    let pw = add_user(&pool, "root", Role::Admin).await.expect("admin");
    let admin = Client::login(router.clone(), "root", &pw).await;
    (router, admin)
}

pub async fn labeler(pool: &SqlitePool, router: &Router, name: &str) -> Client {
    let pw = add_user(pool, name, Role::Labeler).await.expect("labeler");
    Client::login(router.clone(), name, &pw).await
}

/// Creates project `name` with `overlap` and imports `jsonl` through the API.
pub async fn project(admin: &Client, name: &str, overlap: i64, jsonl: &str) {
    let r = admin
        .post(
            "/api/projects",
            serde_json::json!({ "name": name, "overlap": overlap }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = admin
        .raw(
            Method::POST,
            &format!("/api/projects/{name}/import"),
            Some("application/x-ndjson"),
            jsonl.to_owned(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// Asks for the next comparison; `None` when the queue is empty for this labeler.
pub async fn next(c: &Client, project: &str) -> Option<Value> {
    let r = c
        .post(
            &format!("/api/projects/{project}/next"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    (!v["done"].as_bool().expect("done flag")).then(|| v["comparison"].clone())
}

pub async fn label(c: &Client, assignment: i64, choice: &str, client_id: &str) -> Reply {
    c.post(
        "/api/labels",
        serde_json::json!({ "assignment_id": assignment, "choice": choice, "client_id": client_id }),
    )
    .await
}
