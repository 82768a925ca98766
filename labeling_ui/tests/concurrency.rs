//! Many labelers submitting at once (with retries of the same click) lose and duplicate nothing.

mod common;

use axum::http::StatusCode;
use common::{label, labeler, next, project, setup};
use labeling_ui::db;

const LABELERS: usize = 32;
const PER_LABELER: usize = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_labelers_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let pool = db::open(dir.path().join("c.sqlite").to_str().expect("utf8"))
        .await
        .expect("db");
    let (router, admin) = setup(pool.clone()).await;
    // Twice the comparisons strictly needed, so no labeler runs dry at the tail of the queue.
    let rows: String = (0..LABELERS * PER_LABELER)
        .map(|i| format!("{{\"prompt\":\"p{i}\",\"responses\":[\"a{i}\",\"b{i}\"]}}\n"))
        .collect();
    project(&admin, "p", 2, &rows).await;
    let mut tasks = Vec::new();
    for w in 0..LABELERS {
        let c = labeler(&pool, &router, &format!("l{w}")).await;
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < PER_LABELER {
                let Some(cmp) = next(&c, "p").await else {
                    break;
                };
                let id = cmp["assignment_id"].as_i64().expect("id");
                let cid = format!("{w}-{done}");
                // Every click is sent twice, as a client retrying after a lost answer would.
                let (a, b) = tokio::join!(label(&c, id, "A", &cid), label(&c, id, "A", &cid));
                assert_eq!(
                    (a.status, b.status),
                    (StatusCode::OK, StatusCode::OK),
                    "{} {}",
                    a.text,
                    b.text
                );
                assert_eq!(a.json()["label_id"], b.json()["label_id"]);
                done += 1;
            }
            done
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.expect("task");
    }
    assert_eq!(acked, LABELERS * PER_LABELER, "every labeler found work");
    let labels: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM labels")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(labels as usize, acked, "nothing lost, nothing doubled");
    let over: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT comparison_id FROM assignments GROUP BY comparison_id HAVING COUNT(*) > 2)",
    )
    .fetch_one(&pool)
    .await
    .expect("overlap");
    assert_eq!(over, 0, "no comparison handed out beyond its overlap");
}
