//! Blind evaluation round trip on a temporary labeling database: `push_to_labeling` imports
//! base-vs-aligned pairs, labels are stored as the app stores them (canonical first/second),
//! and `win_rates` gives the hand-computed counts and Wilson intervals.
use compare::blind::{label_progress, push_to_labeling, win_rates};
use compare::Sample;
use labeling_ui::auth::{add_user, Role};
use lm::TextOrMessages;
use sqlx::Row;

fn sample(model: &str, group: &str, i: usize, completion: &str) -> Sample {
    Sample {
        model: model.into(),
        prompt_id: format!("{group}/{i}"),
        group: group.into(),
        variant: format!("v{i}"),
        category: "c".into(),
        prompt: TextOrMessages::Text(format!("prompt {group} {i}")),
        sample: 0,
        completion: completion.into(),
        completion_tokens: 3,
        finished: true,
        logprob: 0.0,
        logprob_base: 0.0,
        kl: 0.0,
        reward: None,
        refusal: false,
        ids: None,
    }
}

fn samples() -> Vec<Sample> {
    let mut v = vec![];
    // Group a: 4 prompts; group b: 3 prompts, the last with identical answers (not imported).
    for (g, n) in [("a", 4), ("b", 3)] {
        for i in 0..n {
            v.push(sample("base", g, i, &format!("base answer {g}{i}")));
        }
    }
    for (g, n) in [("a", 4), ("b", 3)] {
        for i in 0..n {
            let same = g == "b" && i == 2;
            let text = if same {
                format!("base answer {g}{i}")
            } else {
                format!("aligned answer {g}{i}")
            };
            v.push(sample("aligned", g, i, &text));
        }
    }
    v
}

async fn label(pool: &sqlx::SqlitePool, user: i64, comparison: i64, choice: &str, undone: bool) {
    let c = sqlx::query("SELECT project_id, item_id FROM comparisons WHERE id = ?")
        .bind(comparison)
        .fetch_one(pool)
        .await
        .unwrap();
    let (p, i): (i64, i64) = (c.get(0), c.get(1));
    let a: i64 = sqlx::query(
        "INSERT INTO assignments (project_id, item_id, comparison_id, user_id, swapped, created_at)
         VALUES (?, ?, ?, ?, 1, 0) RETURNING id",
    )
    .bind(p)
    .bind(i)
    .bind(comparison)
    .bind(user)
    .fetch_one(pool)
    .await
    .unwrap()
    .get(0);
    sqlx::query("INSERT INTO labels (assignment_id, client_id, choice, created_at, undone_at) VALUES (?, ?, ?, 0, ?)")
        .bind(a)
        .bind(format!("{user}-{comparison}"))
        .bind(choice)
        .bind(undone.then_some(1i64))
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn win_rates_match_hand_computed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("labels.sqlite").display().to_string();
    let pool = labeling_ui::db::open(&db).await.unwrap();
    labeling_ui::create_project(&pool, "eval", 2).await.unwrap();
    let n = push_to_labeling(&pool, "eval", &samples()).await.unwrap();
    assert_eq!(n, 6, "identical answers are not imported");
    assert_eq!(label_progress(&pool, "eval").await.unwrap(), (0, 6));
    add_user(&pool, "ann", Role::Labeler).await.unwrap();
    add_user(&pool, "bob", Role::Labeler).await.unwrap();
    let ids: Vec<i64> = sqlx::query("SELECT c.id FROM comparisons c ORDER BY c.id")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Canonical order: first = base, second = aligned (the page's A/B swap is undone on save).
    for (c, choice) in ids
        .iter()
        .zip(["second", "second", "first", "tie", "second", "both_bad"])
    {
        label(&pool, 1, *c, choice, false).await;
    }
    label(&pool, 2, ids[2], "first", true).await; // undone: must not count
    assert_eq!(label_progress(&pool, "eval").await.unwrap(), (6, 6));
    let rows = win_rates(&pool, "eval").await.unwrap();
    let find = |g: Option<&str>| rows.iter().find(|r| r.group.as_deref() == g).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    // Group a: 2 wins, 1 loss, 1 tie of 4. Wilson(2, 4) = (0.1500390, 0.8499610),
    // Wilson(1, 4) = (0.0455873, 0.6993582) (formula and Python snippet in src/stats.rs).
    let a = find(Some("a"));
    assert_eq!((a.tally.wins, a.tally.losses, a.tally.ties), (2, 1, 1));
    let w = a.win_rate.unwrap();
    assert!(
        close(w.value, 0.5) && close(w.lo, 0.150_039) && close(w.hi, 0.849_961),
        "{w:?}"
    );
    let t = a.tie_rate.unwrap();
    assert!(
        close(t.value, 0.25) && close(t.lo, 0.045_587_3) && close(t.hi, 0.699_358_2),
        "{t:?}"
    );
    // Group b: a win and a "both bad" (counted as a tie). Wilson(1, 2) = (0.0945312, 0.9054688).
    let b = find(Some("b"));
    assert_eq!((b.tally.wins, b.tally.losses, b.tally.ties), (1, 0, 1));
    assert!(close(b.win_rate.unwrap().lo, 0.094_531_2));
    // Overall: 3 wins, 1 loss, 2 ties of 6. Wilson(3, 6) = (0.1876163, 0.8123837),
    // Wilson(2, 6) = (0.0967714, 0.7000067).
    let all = find(None);
    assert_eq!((all.model.as_str(), all.base.as_str()), ("aligned", "base"));
    assert_eq!(
        (all.tally.wins, all.tally.losses, all.tally.ties),
        (3, 1, 2)
    );
    let w = all.win_rate.unwrap();
    assert!(
        close(w.value, 0.5) && close(w.lo, 0.187_616_3) && close(w.hi, 0.812_383_7),
        "{w:?}"
    );
    let t = all.tie_rate.unwrap();
    assert!(
        close(t.lo, 0.096_771_4) && close(t.hi, 0.700_006_7),
        "{t:?}"
    );
    // The comparisons stay blind: the items the labelers see carry no model names.
    let bodies: Vec<String> = sqlx::query("SELECT prompt_json FROM items")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(bodies
        .iter()
        .all(|b| !b.contains("aligned") && !b.contains("base")));
}

/// Items and their model tags go in one transaction: a push the labeling app refuses (2-answer
/// items in a project that ranks 3) leaves neither; a missing project is named with the fix.
#[tokio::test]
async fn a_refused_push_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("labels.sqlite").display().to_string();
    let pool = labeling_ui::db::open(&db).await.unwrap();
    labeling_ui::create_ranking_project(&pool, "ranked", 1, 3)
        .await
        .unwrap();
    let err = push_to_labeling(&pool, "ranked", &samples())
        .await
        .expect_err("a ranking project needs 3 responses per item");
    assert!(err.to_string().contains("shows 3 responses"), "{err}");
    for table in ["items", "compare_pairs"] {
        let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
    let err = push_to_labeling(&pool, "ghost", &samples())
        .await
        .expect_err("no such project");
    assert!(err.to_string().contains("ghost"), "{err}");
    let err = win_rates(&pool, "ghost")
        .await
        .expect_err("no such project");
    assert!(
        err.to_string().contains("`ghost` does not exist")
            && err.to_string().contains("create-project"),
        "{err}"
    );
}
