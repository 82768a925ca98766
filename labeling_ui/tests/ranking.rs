//! Ranking mode through the JSON API: project settings, K shown in a random recorded order,
//! rankings with ties and unacceptable flags, idempotent retries, undo, export expansion and
//! agreement.

mod common;

use axum::http::StatusCode;
use common::{labeler, setup, Client};
use labeling_ui::{export_jsonl, ExportOptions, Ties};
use serde_json::{json, Value};
use sqlx::SqlitePool;

const ITEMS: &str = r#"{"prompt": "Q1", "responses": ["r0", "r1", "r2", "r3"]}
{"prompt": [{"role": "user", "content": "Q2"}], "responses": ["s0", "s1", "s2", "s3", "s4"]}
"#;

async fn ranking_project(admin: &Client, name: &str, overlap: i64, jsonl: &str) {
    let body = json!({ "name": name, "overlap": overlap, "mode": "ranking", "k": 4 });
    let r = admin.post("/api/projects", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = admin
        .raw(
            axum::http::Method::POST,
            &format!("/api/projects/{name}/import"),
            Some("application/x-ndjson"),
            jsonl.to_owned(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({ "items": 2, "comparisons": 0, "rankings": 2 })
    );
}

/// The next ranking to show (`None` when done).
async fn next(c: &Client, project: &str) -> Option<Value> {
    let r = c
        .post(&format!("/api/projects/{project}/next"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["mode"], "ranking");
    (!v["done"].as_bool().expect("done")).then(|| v["ranking"].clone())
}

/// Turns tiers of response texts into tiers of shown positions of `shown`.
fn positions(shown: &Value, tiers: &[&[&str]]) -> Vec<Vec<usize>> {
    let texts: Vec<&str> = shown["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .map(|v| v.as_str().expect("text"))
        .collect();
    let pos = |t: &str| texts.iter().position(|x| *x == t).expect("shown");
    tiers
        .iter()
        .map(|t| t.iter().map(|x| pos(x)).collect())
        .collect()
}

async fn rank(c: &Client, shown: &Value, tiers: &[&[&str]], bad: &[&str], id: &str) -> Value {
    let bad: Vec<usize> = positions(shown, &[bad]).remove(0);
    let body = json!({
        "assignment_id": shown["assignment_id"], "ranking": positions(shown, tiers),
        "unacceptable": bad, "client_id": id,
    });
    let r = c.post("/api/rankings", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

fn pairs(text: &str) -> Vec<(String, String, i64)> {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other[0]["content"].as_str().expect("message").to_owned(),
    };
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .map(|v| {
            (
                s(&v["chosen"]),
                s(&v["rejected"]),
                v["rank_gap"].as_i64().expect("gap"),
            )
        })
        .collect()
}

fn owned(v: &[(&str, &str, i64)]) -> Vec<(String, String, i64)> {
    v.iter()
        .map(|(a, b, g)| (a.to_string(), b.to_string(), *g))
        .collect()
}

#[sqlx::test(migrator = "labeling_ui::db::MIGRATOR")]
async fn rank_with_ties_and_flags_retry_undo_export(pool: SqlitePool) {
    let (router, admin) = setup(pool.clone()).await;
    ranking_project(&admin, "rk", 1, ITEMS).await;
    let ann = labeler(&pool, &router, "ann").await;

    let first = next(&ann, "rk").await.expect("first item");
    assert_eq!(first["prompt"], "Q1");
    let mut shown: Vec<String> = serde_json::from_value(first["responses"].clone()).unwrap();
    shown.sort();
    assert_eq!(shown, ["r0", "r1", "r2", "r3"], "all four, in some order");
    assert_eq!(
        next(&ann, "rk").await.expect("same"),
        first,
        "reload: same order"
    );

    // r2 > r0 = r3 > r1, r1 unacceptable; sent twice with one client id.
    let tiers: &[&[&str]] = &[&["r2"], &["r0", "r3"], &["r1"]];
    let a = rank(&ann, &first, tiers, &["r1"], "c-1").await;
    assert_eq!(a["duplicate"], false);
    let b = rank(&ann, &first, tiers, &["r1"], "c-1").await;
    assert_eq!(
        (b["duplicate"].clone(), b["label_id"].clone()),
        (json!(true), a["label_id"].clone())
    );
    let r = ann
        .post(
            "/api/rankings",
            json!({ "assignment_id": first["assignment_id"],
            "ranking": [[0, 1, 2, 3]], "client_id": "c-2" }),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "second ranking of one assignment"
    );

    // Five responses, K = 4: a random four of them.
    let second = next(&ann, "rk").await.expect("second item");
    assert_eq!(second["responses"].as_array().unwrap().len(), 4);
    let got: Vec<&str> = second["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    rank(
        &ann,
        &second,
        &[&[got[0]], &[got[1]], &[got[2], got[3]]],
        &[],
        "c-3",
    )
    .await;
    assert!(next(&ann, "rk").await.is_none());

    // Undo brings the second item back in the same order; rank it again differently.
    let r = ann.post("/api/projects/rk/undo", json!({})).await;
    assert_eq!(r.json()["assignment_id"], second["assignment_id"]);
    let again = next(&ann, "rk").await.expect("reopened");
    assert_eq!(again, second);
    rank(
        &ann,
        &again,
        &[&[got[3]], &[got[2]], &[got[1]], &[got[0]]],
        &[],
        "c-4",
    )
    .await;

    let (text, n) = export_jsonl(&pool, "rk", ExportOptions::default())
        .await
        .unwrap();
    let want = [
        ("r2", "r0", 1),
        ("r2", "r3", 1),
        ("r2", "r1", 2),
        ("r0", "r1", 1),
        ("r3", "r1", 1),
    ];
    let mut want = owned(&want);
    let (g0, g1, g2, g3) = (got[0], got[1], got[2], got[3]);
    want.extend(owned(&[
        (g3, g2, 1),
        (g3, g1, 2),
        (g3, g0, 3),
        (g2, g1, 1),
        (g2, g0, 2),
        (g1, g0, 1),
    ]));
    let mut got_pairs = pairs(&text);
    let (mut a, mut b) = (got_pairs.split_off(5), want.split_off(5));
    got_pairs.sort();
    want.sort();
    a.sort();
    b.sort();
    assert_eq!((got_pairs, a), (want, b), "{text}");
    assert_eq!(n, 11, "the retry and the undone ranking add nothing");
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["prompt"], "Q1");
    assert_eq!(
        rows[5]["chosen"][0]["role"], "assistant",
        "message prompt: message completions"
    );
    assert!(rows[..5]
        .iter()
        .all(|r| r["group"] == rows[0]["group"] && r["margin"].is_null()));
    assert_ne!(rows[5]["group"], rows[0]["group"]);
    export_options(&pool).await;
    let r = admin
        .get("/api/projects/rk/export?ties=margin&max_pairs_per_ranking=3")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.text.lines().count(),
        6,
        "the HTTP export takes the cap too"
    );
}

async fn export_options(pool: &SqlitePool) {
    let opts = ExportOptions {
        ties: Ties::Margin,
        raw: false,
        max_pairs_per_ranking: Some(3),
    };
    let (text, n) = export_jsonl(pool, "rk", opts).await.unwrap();
    assert_eq!(n, 6, "3 + 3 pairs:\n{text}");
    for row in text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
    {
        let margin = row["margin"].as_f64().expect("margin");
        assert!((margin - row["rank_gap"].as_f64().unwrap() / 3.0).abs() < 1e-12);
    }
    assert_eq!(
        export_jsonl(pool, "rk", opts).await.unwrap().0,
        text,
        "reproducible"
    );
    let raw = ExportOptions {
        raw: true,
        ..Default::default()
    };
    let (text, n) = export_jsonl(pool, "rk", raw).await.unwrap();
    assert_eq!(n, 2, "one row per live ranking");
    let row: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let resp: Vec<String> = serde_json::from_value(row["responses"].clone()).unwrap();
    let text_of = |p: &Value| resp[p.as_u64().unwrap() as usize].clone();
    let tiers: Vec<Vec<String>> = row["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_array().unwrap().iter().map(text_of).collect())
        .collect();
    let mut mid = tiers[1].clone();
    mid.sort();
    assert_eq!(
        (tiers[0].clone(), mid, tiers[2].clone()),
        (
            vec!["r2".to_string()],
            vec!["r0".into(), "r3".into()],
            vec!["r1".to_string()]
        )
    );
    assert_eq!(text_of(&row["unacceptable"][0]), "r1");
    let idx: Vec<usize> = serde_json::from_value(row["response_idx"].clone()).unwrap();
    let by_idx: Vec<String> = idx.iter().map(|&i| format!("r{i}")).collect();
    assert_eq!(by_idx, resp, "response_idx records the shown order");
}

#[sqlx::test(migrator = "labeling_ui::db::MIGRATOR")]
async fn bad_rankings_and_settings_are_4xx(pool: SqlitePool) {
    let (router, admin) = setup(pool.clone()).await;
    for body in [
        json!({ "name": "x", "mode": "ranking" }),
        json!({ "name": "x", "mode": "ranking", "k": 2 }),
        json!({ "name": "x", "mode": "ranking", "k": 10 }),
        json!({ "name": "x", "k": 4 }),
        json!({ "name": "x", "mode": "triples" }),
    ] {
        let r = admin.post("/api/projects", body.clone()).await;
        assert!(r.status.is_client_error(), "{body}: {}", r.text);
    }
    ranking_project(&admin, "rk", 1, ITEMS).await;
    let r = admin
        .raw(
            axum::http::Method::POST,
            "/api/projects/rk/import",
            Some("text/plain"),
            "{\"prompt\": \"p\", \"responses\": [\"a\", \"b\", \"c\"]}\n".into(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["lines"][0]["line"], 1, "{}", r.text);
    let ann = labeler(&pool, &router, "ann").await;
    let shown = next(&ann, "rk").await.unwrap();
    let id = shown["assignment_id"].clone();
    for (ranking, bad) in [
        (json!([[0, 1, 2]]), json!([])),
        (json!([[0, 1, 2, 3, 4]]), json!([])),
        (json!([[0, 0], [1, 2, 3]]), json!([])),
        (json!([[0], [], [1, 2, 3]]), json!([])),
        (json!([[0], [1, 2], [3]]), json!([1])),
        (json!([[0], [1], [2], [3]]), json!([2])),
    ] {
        let body = json!({ "assignment_id": id, "ranking": ranking, "unacceptable": bad, "client_id": format!("{ranking}{bad}") });
        let r = ann.post("/api/rankings", body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{ranking} {bad}: {}",
            r.text
        );
    }
    let r = ann
        .post(
            "/api/labels",
            json!({ "assignment_id": id, "choice": "A", "client_id": "z" }),
        )
        .await;
    assert!(
        r.status.is_client_error(),
        "a pairwise label on a ranking assignment: {}",
        r.text
    );
    let bob = labeler(&pool, &router, "bob").await;
    let body = json!({ "assignment_id": id, "ranking": [[0], [1], [2], [3]], "client_id": "b" });
    assert_eq!(
        bob.post("/api/rankings", body).await.status,
        StatusCode::NOT_FOUND,
        "not bob's"
    );
}

/// Goldens (scipy 1.17 / krippendorff 0.9.0) over doubled rank positions:
/// ann r0 > r1 > r2 > r3 -> [2, 4, 6, 8]; bob r1 > r0 = r2 > r3 -> [5, 2, 5, 8];
/// `kendalltau(ann, bob).statistic` = 0.5477225575051662 (= 3 / sqrt(30));
/// `krippendorff.alpha(reliability_data=[ann, bob], level_of_measurement="ordinal")`
/// = 0.7083333333333333.
#[sqlx::test(migrator = "labeling_ui::db::MIGRATOR")]
async fn stats_give_kendall_tau_and_ordinal_alpha(pool: SqlitePool) {
    let (router, admin) = setup(pool.clone()).await;
    ranking_project(&admin, "rk", 2, ITEMS).await;
    let ann = labeler(&pool, &router, "ann").await;
    let bob = labeler(&pool, &router, "bob").await;
    let s = next(&ann, "rk").await.unwrap();
    rank(&ann, &s, &[&["r0"], &["r1"], &["r2"], &["r3"]], &[], "a1").await;
    let s = next(&bob, "rk").await.unwrap();
    rank(&bob, &s, &[&["r1"], &["r0", "r2"], &["r3"]], &["r3"], "b1").await;
    let r = admin.get("/api/projects/rk/stats").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let st = r.json();
    assert_eq!(
        (
            st["mode"].clone(),
            st["labels"].clone(),
            st["complete"].clone()
        ),
        (json!("ranking"), json!(2), json!(1))
    );
    assert_eq!(st["kendall"][0]["n"], 1);
    let tau = st["kendall"][0]["tau"].as_f64().unwrap();
    assert!((tau - 0.5477225575051662).abs() < 1e-12, "{tau}");
    let alpha = st["alpha_ordinal"].as_f64().unwrap();
    assert!((alpha - 0.7083333333333333).abs() < 1e-12, "{alpha}");
    assert_eq!(st["alpha_ordinal_units"], 4);
    let list = admin.get("/api/projects").await.json();
    assert_eq!(
        (
            list["projects"][0]["mode"].clone(),
            list["projects"][0]["k"].clone()
        ),
        (json!("ranking"), json!(4))
    );
}
