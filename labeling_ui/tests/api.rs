//! API tests through `app(state).oneshot(..)` on a fresh `#[sqlx::test]` database.

mod common;

use axum::http::{header, Method, StatusCode};
use common::{label, labeler, next, project, setup, Client};
use serde_json::{json, Value};
use sqlx::SqlitePool;

const ITEMS: &str = r#"{"prompt": "Say hi", "responses": ["hi", "hello", "hey"]}
{"prompt": [{"role": "user", "content": "2+2?"}], "chosen": "4", "rejected": "5"}
"#;

#[sqlx::test(migrations = "../migrations")]
async fn login_sets_httponly_strict_cookie_and_rejects_bad_password(pool: SqlitePool) {
    let (router, admin) = setup(pool).await;
    let me = admin.get("/api/me").await;
    assert_eq!(me.json()["role"], "admin");
    let anon = Client::anonymous(router.clone());
    let r = anon
        .post("/api/login", json!({ "name": "root", "password": "wrong" }))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.json()["error"].is_string());
    assert_eq!(anon.get("/api/me").await.status, StatusCode::UNAUTHORIZED);
    let ok = anon
        .post("/api/login", json!({ "name": "nobody", "password": "x" }))
        .await;
    assert_eq!(ok.status, StatusCode::UNAUTHORIZED);
    let good = admin.post("/api/logout", json!({})).await;
    assert_eq!(good.status, StatusCode::OK);
    let cookie = good
        .headers
        .get(header::SET_COOKIE)
        .expect("cleared")
        .to_str()
        .expect("ascii");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Max-Age=0")
    );
    assert_eq!(
        admin.get("/api/me").await.status,
        StatusCode::UNAUTHORIZED,
        "session ended"
    );
}

/// A missing user and a wrong password both cost one argon2 run, so response times do not tell
/// which accounts exist (before: ~0.5 ms vs ~19 ms). Tries alternate, and the fastest of each
/// side is compared: other tests running alongside can only add time, so the minimum is each
/// path's own cost (medians flaked at 0.4 with a parallel test hashing passwords). The factor
/// of 2 is far inside the old gap of ~40.
#[sqlx::test(migrations = "../migrations")]
async fn login_timing_does_not_reveal_which_users_exist(pool: SqlitePool) {
    let (router, _admin) = setup(pool).await;
    let anon = Client::anonymous(router);
    let attempt = |name: &'static str| {
        let anon = &anon;
        async move {
            let start = std::time::Instant::now();
            let r = anon
                .post("/api/login", json!({ "name": name, "password": "wrong" }))
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
            start.elapsed().as_secs_f64()
        }
    };
    attempt("nobody").await; // the dummy hash is made once, on first need
    let (mut missing, mut wrong) = (vec![], vec![]);
    for _ in 0..25 {
        wrong.push(attempt("root").await);
        missing.push(attempt("nobody").await);
    }
    missing.sort_by(f64::total_cmp);
    wrong.sort_by(f64::total_cmp);
    let ratio = missing[0] / wrong[0];
    assert!(
        (0.5..=2.0).contains(&ratio),
        "fastest missing-user try {:.2} ms vs wrong password {:.2} ms (ratio {ratio:.2}; \
         medians {:.2} / {:.2} ms)",
        missing[0] * 1e3,
        wrong[0] * 1e3,
        missing[12] * 1e3,
        wrong[12] * 1e3
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn session_cookie_flags(pool: SqlitePool) {
    let router = labeling_ui::app(labeling_ui::AppState::new(pool.clone()));
    let pw = labeling_ui::auth::add_user(&pool, "ann", labeling_ui::auth::Role::Labeler)
        .await
        .expect("user");
    let r = Client::anonymous(router)
        .post("/api/login", json!({ "name": "ann", "password": pw }))
        .await;
    let cookie = r
        .headers
        .get(header::SET_COOKIE)
        .expect("cookie")
        .to_str()
        .expect("ascii");
    assert!(cookie.starts_with("rudder_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE name = 'ann'")
        .fetch_one(&pool)
        .await
        .expect("row");
    assert!(
        stored.starts_with("$argon2"),
        "argon2 hash, not the password"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn state_changing_requests_need_the_csrf_token(pool: SqlitePool) {
    let (router, admin) = setup(pool).await;
    let mut forged = Client::anonymous(router);
    forged.cookie = admin.cookie.clone();
    let r = forged.post("/api/projects", json!({ "name": "p" })).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].as_str().expect("msg").contains("CSRF"));
    forged.csrf = Some("0".repeat(32));
    assert_eq!(
        forged
            .post("/api/projects", json!({ "name": "p" }))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        forged.get("/api/projects").await.status,
        StatusCode::OK,
        "reads need no token"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn only_admins_create_import_export_and_see_stats(pool: SqlitePool) {
    let (router, admin) = setup(pool.clone()).await;
    project(&admin, "p", 1, ITEMS).await;
    let ann = labeler(&pool, &router, "ann").await;
    assert_eq!(
        ann.post("/api/projects", json!({ "name": "q" }))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let imp = ann
        .raw(
            Method::POST,
            "/api/projects/p/import",
            Some("text/plain"),
            ITEMS.into(),
        )
        .await;
    assert_eq!(imp.status, StatusCode::FORBIDDEN);
    assert_eq!(
        ann.get("/api/projects/p/export").await.status,
        StatusCode::FORBIDDEN
    );
    let stats = ann.get("/api/projects/p/stats").await;
    assert_eq!(stats.status, StatusCode::FORBIDDEN);
    assert_eq!(stats.json()["error"], "admins only");
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_rows_are_reported_by_line_and_nothing_is_imported(pool: SqlitePool) {
    let (_router, admin) = setup(pool.clone()).await;
    project(&admin, "p", 1, ITEMS).await;
    let bad = "{\"prompt\": \"ok\", \"responses\": [\"a\", \"b\"]}\n\n{\"prompt\": \"one\", \"responses\": [\"a\"]}\nnot json\n{\"prompt\": 3, \"responses\": [\"a\", \"b\"]}\n";
    let r = admin
        .raw(
            Method::POST,
            "/api/projects/p/import",
            Some("text/plain"),
            bad.into(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let lines: Vec<u64> = r.json()["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["line"].as_u64().expect("n"))
        .collect();
    assert_eq!(lines, vec![3, 4, 5]);
    let items: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(items, 2, "only the first good import is there");
    let unknown = admin
        .raw(
            Method::POST,
            "/api/projects/nope/import",
            Some("text/plain"),
            ITEMS.into(),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// Maps a shown choice to the response text it prefers.
fn preferred(c: &Value, choice: &str) -> String {
    c[if choice == "A" { "a" } else { "b" }]
        .as_str()
        .expect("text")
        .to_owned()
}

#[sqlx::test(migrations = "../migrations")]
async fn two_labelers_label_everything_and_export_aggregates(pool: SqlitePool) {
    let (router, admin) = setup(pool.clone()).await;
    project(&admin, "p", 2, ITEMS).await;
    let (ann, bob) = (
        labeler(&pool, &router, "ann").await,
        labeler(&pool, &router, "bob").await,
    );
    let mut winners = Vec::new();
    for (i, who) in [&ann, &bob].into_iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        while let Some(c) = next(who, "p").await {
            // Both prefer the alphabetically smaller text, so they agree whatever the A/B order.
            let (a, b) = (c["a"].as_str().expect("a"), c["b"].as_str().expect("b"));
            let pick = if a <= b { "A" } else { "B" };
            let id = c["assignment_id"].as_i64().expect("id");
            assert!(
                seen.insert((a.min(b).to_owned(), a.max(b).to_owned())),
                "never shown twice"
            );
            let r = label(who, id, pick, &format!("{i}-{id}")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            if i == 0 {
                winners.push(preferred(&c, pick));
            }
        }
        assert_eq!(
            seen.len(),
            4,
            "3 pairs from the 3-response item + 1 TRL pair"
        );
    }
    let export = admin.get("/api/projects/p/export").await;
    assert_eq!(export.status, StatusCode::OK);
    let rows: Vec<Value> = export
        .text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert_eq!(row["votes"]["chosen"], 2);
        assert_eq!(row["agreement"], 1.0);
    }
    let trl = rows
        .iter()
        .find(|r| r["prompt"].is_array())
        .expect("conversational row");
    assert_eq!(
        trl["chosen"],
        json!([{ "role": "assistant", "content": "4" }])
    );
    let raw = admin.get("/api/projects/p/export?raw=true").await;
    assert_eq!(raw.text.lines().count(), 8);
    let stats = admin.get("/api/projects/p/stats").await.json();
    assert_eq!(stats["complete"], 4);
    assert_eq!(stats["alpha_units"], 4);
    assert_eq!(stats["kappa"][0]["n"], 4);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_retried_submission_counts_once(pool: SqlitePool) {
    let (router, admin) = setup(pool.clone()).await;
    project(&admin, "p", 1, ITEMS).await;
    let ann = labeler(&pool, &router, "ann").await;
    let c = next(&ann, "p").await.expect("work");
    let id = c["assignment_id"].as_i64().expect("id");
    let first = label(&ann, id, "A", "click-1").await.json();
    let again = label(&ann, id, "A", "click-1").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(again.json()["label_id"], first["label_id"]);
    let other = label(&ann, id, "B", "click-2").await;
    assert_eq!(other.status, StatusCode::CONFLICT, "already labeled");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM labels")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, 1);
}

/// The README promises 1-100 characters: multi-byte ids (60 "é" = 120 bytes) are fine, and a
/// 101-character one is refused by name, on both the pairwise and the ranking route.
#[sqlx::test(migrations = "../migrations")]
async fn client_id_limit_counts_characters_not_bytes(pool: SqlitePool) {
    let (router, admin) = setup(pool.clone()).await;
    project(&admin, "p", 1, ITEMS).await;
    let ann = labeler(&pool, &router, "ann").await;
    let first = next(&ann, "p").await.expect("work")["assignment_id"]
        .as_i64()
        .expect("id");
    for bad in ["é".repeat(101), String::new()] {
        for route in ["/api/labels", "/api/rankings"] {
            let body = json!({ "assignment_id": first, "choice": "A", "ranking": [[0], [1]],
                               "client_id": bad });
            let r = ann.post(route, body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{route}: {}", r.text);
            let msg = r.json()["error"].as_str().expect("message").to_owned();
            assert!(
                msg.contains("client_id") && msg.contains("1-100 characters"),
                "{msg}"
            );
        }
    }
    let sixty = label(&ann, first, "A", &"é".repeat(60)).await;
    assert_eq!(sixty.status, StatusCode::OK, "{}", sixty.text);
    let second = next(&ann, "p").await.expect("work")["assignment_id"]
        .as_i64()
        .expect("id");
    let hundred = label(&ann, second, "B", &"é".repeat(100)).await;
    assert_eq!(hundred.status, StatusCode::OK, "{}", hundred.text);
    let stored: Vec<String> = sqlx::query_scalar("SELECT client_id FROM labels ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("labels");
    assert_eq!(stored, ["é".repeat(60), "é".repeat(100)]);
}

#[sqlx::test(migrations = "../migrations")]
async fn labelers_only_touch_their_own_assignments(pool: SqlitePool) {
    let (router, admin) = setup(pool.clone()).await;
    project(&admin, "p", 1, ITEMS).await;
    let (ann, bob) = (
        labeler(&pool, &router, "ann").await,
        labeler(&pool, &router, "bob").await,
    );
    let c = next(&ann, "p").await.expect("work");
    let id = c["assignment_id"].as_i64().expect("id");
    assert_eq!(
        label(&bob, id, "A", "x").await.status,
        StatusCode::NOT_FOUND
    );
    let again = next(&ann, "p").await.expect("same");
    assert_eq!(
        again["assignment_id"], id,
        "an open assignment comes back on reload"
    );
    let b = next(&bob, "p").await.expect("work");
    assert_ne!(b["assignment_id"], id);
    let progress = bob.get("/api/projects/p/progress").await.json();
    assert_eq!(progress, json!({ "labeled": 0, "comparisons": 4 }));
}

#[sqlx::test(migrations = "../migrations")]
async fn overlap_limits_how_many_labelers_see_a_comparison(pool: SqlitePool) {
    let (router, admin) = setup(pool.clone()).await;
    project(
        &admin,
        "p",
        2,
        "{\"prompt\":\"x\",\"responses\":[\"a\",\"b\"]}\n",
    )
    .await;
    let mut got = 0;
    for name in ["a1", "a2", "a3"] {
        let c = labeler(&pool, &router, name).await;
        if let Some(cmp) = next(&c, "p").await {
            got += 1;
            let id = cmp["assignment_id"].as_i64().expect("id");
            assert_eq!(label(&c, id, "tie", name).await.status, StatusCode::OK);
            assert!(
                next(&c, "p").await.is_none(),
                "never twice to the same labeler"
            );
        }
    }
    assert_eq!(got, 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn undo_reopens_the_last_label(pool: SqlitePool) {
    let (router, admin) = setup(pool.clone()).await;
    project(&admin, "p", 1, ITEMS).await;
    let ann = labeler(&pool, &router, "ann").await;
    let c1 = next(&ann, "p").await.expect("1");
    label(&ann, c1["assignment_id"].as_i64().expect("id"), "A", "u1").await;
    let c2 = next(&ann, "p").await.expect("2");
    let id2 = c2["assignment_id"].as_i64().expect("id");
    label(&ann, id2, "B", "u2").await;
    let _c3 = next(&ann, "p").await.expect("3 shown, not labeled");
    let undone = ann.post("/api/projects/p/undo", json!({})).await.json();
    assert_eq!(undone["assignment_id"], id2);
    let back = next(&ann, "p").await.expect("undone comes back first");
    assert_eq!(back["assignment_id"], id2);
    assert_eq!(
        (back["a"].clone(), back["b"].clone()),
        (c2["a"].clone(), c2["b"].clone()),
        "same A/B order"
    );
    assert_eq!(
        label(&ann, id2, "A", "u2").await.json()["duplicate"],
        true,
        "spent client id stays spent"
    );
    assert_eq!(label(&ann, id2, "A", "u2b").await.status, StatusCode::OK);
    let raw = admin.get("/api/projects/p/export?raw=true").await;
    assert_eq!(raw.text.lines().count(), 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn client_errors_are_json_4xx(pool: SqlitePool) {
    let (_router, admin) = setup(pool).await;
    project(&admin, "p", 1, ITEMS).await;
    let cases = [
        (
            admin
                .raw(
                    Method::POST,
                    "/api/labels",
                    Some("application/json"),
                    "{not json".into(),
                )
                .await,
            StatusCode::BAD_REQUEST,
        ),
        (
            admin
                .raw(Method::POST, "/api/labels", Some("text/plain"), "{}".into())
                .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            admin
                .post("/api/labels", json!({ "assignment_id": 1 }))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            admin
                .post(
                    "/api/labels",
                    json!({ "assignment_id": 999, "choice": "A", "client_id": "z" }),
                )
                .await,
            StatusCode::NOT_FOUND,
        ),
        (
            admin
                .post(
                    "/api/labels",
                    json!({ "assignment_id": 1, "choice": "C", "client_id": "z" }),
                )
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            admin.post("/api/projects/nope/next", json!({})).await,
            StatusCode::NOT_FOUND,
        ),
        (admin.get("/api/nothing-here").await, StatusCode::NOT_FOUND),
        (
            admin.get("/api/labels").await,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            admin.get("/api/projects/p/export?ties=maybe").await,
            StatusCode::BAD_REQUEST,
        ),
        (
            admin
                .raw(
                    Method::POST,
                    "/api/labels",
                    Some("application/json"),
                    "x".repeat(200_000),
                )
                .await,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (i, (reply, want)) in cases.iter().enumerate() {
        assert_eq!(reply.status, *want, "case {i}: {}", reply.text);
        assert!(
            reply.json()["error"].is_string(),
            "case {i}: {}",
            reply.text
        );
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn margin_mode_keeps_split_votes(pool: SqlitePool) {
    let (router, admin) = setup(pool.clone()).await;
    project(
        &admin,
        "p",
        3,
        "{\"prompt\":\"x\",\"responses\":[\"good\",\"bad\"]}\n",
    )
    .await;
    for (name, pick) in [("a1", "good"), ("a2", "good"), ("a3", "tie")] {
        let c = labeler(&pool, &router, name).await;
        let cmp = next(&c, "p").await.expect("work");
        let choice = match pick {
            "tie" => "tie",
            _ if cmp["a"] == "good" => "A",
            _ => "B",
        };
        label(&c, cmp["assignment_id"].as_i64().expect("id"), choice, name).await;
    }
    let drop = admin.get("/api/projects/p/export?ties=drop").await.text;
    let row: Value = serde_json::from_str(drop.trim()).expect("one row");
    assert_eq!(
        (row["chosen"].as_str(), row["rejected"].as_str()),
        (Some("good"), Some("bad"))
    );
    assert_eq!(
        row["votes"],
        json!({ "chosen": 2, "rejected": 0, "tie": 1, "both_bad": 0 })
    );
    assert!(row.get("margin").is_none());
    let margin = admin.get("/api/projects/p/export?ties=margin").await.text;
    let row: Value = serde_json::from_str(margin.trim()).expect("one row");
    assert!((row["margin"].as_f64().expect("margin") - 2.0 / 3.0).abs() < 1e-9);
}

#[sqlx::test(migrations = "../migrations")]
async fn page_and_assets_are_served_with_a_strict_csp(pool: SqlitePool) {
    let (router, _) = setup(pool).await;
    let anon = Client::anonymous(router);
    let page = anon.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("/assets/app.js"));
    let csp = page
        .headers
        .get(header::CONTENT_SECURITY_POLICY)
        .expect("csp")
        .to_str()
        .expect("ascii");
    assert!(csp.contains("script-src 'self'"));
    let js = anon.get("/assets/app.js").await;
    assert!(
        !js.text.contains("innerHTML"),
        "model text must never go through innerHTML"
    );
}
