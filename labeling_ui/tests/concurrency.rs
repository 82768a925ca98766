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

/// Labels written by the load below: each `next` and each label is its own small commit of
/// whole pages (~30 KB of WAL per label here), so ~200 MB of log in all, far past `WAL_BOUND`,
/// unless the log is started over while serving (measured on 2 cores: 251 MB with only PASSIVE
/// checkpoints, as before; 11-15 MB now).
const WAL_LABELERS: usize = 32;
const WAL_PER_LABELER: usize = 200;
/// The checkpointer resets the log past 4 MiB; between its ticks (250 ms) a few MB more land.
const WAL_BOUND: u64 = 32 << 20;

/// Issue #22: under sustained labeling the -wal file grew without bound (710 MB for a 46 MB
/// database), because a PASSIVE checkpoint never catches up with a busy writer and SQLite only
/// starts the log over when one has. Its size is sampled while 32 labelers label at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sustained_labeling_keeps_the_wal_bounded() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("w.sqlite");
    let pool = db::open(path.to_str().expect("utf8")).await.expect("db");
    let (router, admin) = setup(pool.clone()).await;
    let rows: String = (0..WAL_LABELERS * WAL_PER_LABELER)
        .map(|i| format!("{{\"prompt\":\"p{i}\",\"responses\":[\"a{i}\",\"b{i}\"]}}\n"))
        .collect();
    project(&admin, "w", 1, &rows).await;
    let wal = dir.path().join("w.sqlite-wal");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (wal, stop) = (wal.clone(), stop.clone());
        tokio::spawn(async move {
            let mut max = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            max
        })
    };
    let mut tasks = Vec::new();
    for w in 0..WAL_LABELERS {
        let c = labeler(&pool, &router, &format!("w{w}")).await;
        tasks.push(tokio::spawn(async move {
            for done in 0..WAL_PER_LABELER {
                let cmp = next(&c, "w").await.expect("work left");
                let id = cmp["assignment_id"].as_i64().expect("id");
                let r = label(&c, id, "B", &format!("{w}-{done}")).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            }
        }));
    }
    for t in tasks {
        t.await.expect("labeler");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let max = sampler.await.expect("sampler");
    let labels: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM labels")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(labels as usize, WAL_LABELERS * WAL_PER_LABELER);
    assert!(
        max < WAL_BOUND,
        "the WAL reached {:.1} MB after {labels} labels (bound {} MB)",
        max as f64 / 1e6,
        WAL_BOUND >> 20
    );
}
