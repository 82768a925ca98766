//! Database-level tests on the root migrations.

use labeling_ui::{
    create_project, import_items, import_items_in, parse_jsonl, AppError, ImportItem, Prompt,
};
use sqlx::SqlitePool;

fn item(prompt: &str, responses: &[&str]) -> ImportItem {
    ImportItem {
        prompt: Prompt::Text(prompt.into()),
        responses: responses.iter().map(|s| s.to_string()).collect(),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn import_items_is_all_or_nothing(pool: SqlitePool) {
    create_project(&pool, "p", 1).await.expect("project");
    let bad = vec![item("a", &["x", "y"]), item("b", &["only one"])];
    match import_items(&pool, "p", bad).await {
        Err(AppError::Import(lines)) => assert_eq!(lines[0].line, 2),
        other => panic!("expected an import error, got {other:?}"),
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, 0);
    let good = vec![item("a", &["x", "y", "z", "w"]), item("b", &["x", "y"])];
    let report = import_items(&pool, "p", good).await.expect("import");
    assert_eq!((report.items, report.comparisons), (2, 6 + 1));
    let remaining: i64 = sqlx::query_scalar("SELECT SUM(remaining) FROM comparisons")
        .fetch_one(&pool)
        .await
        .expect("sum");
    assert_eq!(
        remaining, 7,
        "each comparison starts with `overlap` open slots"
    );
}

/// Callers that keep data about imported items (blind evaluation) get their ids, in order, and
/// can store that data in the same transaction.
#[sqlx::test(migrations = "../migrations")]
async fn import_returns_the_new_item_ids_in_order(pool: SqlitePool) {
    create_project(&pool, "p", 1).await.expect("project");
    create_project(&pool, "q", 1).await.expect("project");
    import_items(&pool, "q", vec![item("other", &["x", "y"])])
        .await
        .expect("import into q");
    let items = vec![item("a", &["x", "y"]), item("b", &["x", "y", "z"])];
    let report = import_items(&pool, "p", items).await.expect("import");
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT i.id FROM items i JOIN projects p ON p.id = i.project_id \
         WHERE p.name = 'p' ORDER BY i.prompt_json",
    )
    .fetch_all(&pool)
    .await
    .expect("ids");
    assert_eq!(report.item_ids, ids, "prompt a, then b");
    assert_eq!(ids.len(), 2);
    let mut tx = pool.begin().await.expect("begin");
    let rolled = import_items_in(&mut tx, "p", vec![item("c", &["x", "y"])])
        .await
        .expect("import in a transaction");
    assert_eq!(rolled.item_ids.len(), 1);
    tx.rollback().await.expect("rollback");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, 3, "the rolled-back import left nothing");
    let count: i64 = sqlx::query_scalar("SELECT n_comparisons FROM projects WHERE name = 'p'")
        .fetch_one(&pool)
        .await
        .expect("counter");
    assert_eq!(count, 1 + 3, "nor its counter");
}

/// `rudder compare` used to create `compare_pairs` at run time; such a database must still
/// open now that a migration creates the table, and keep its rows.
#[tokio::test]
async fn a_database_with_the_old_run_time_compare_pairs_table_migrates() {
    let dir = tempfile::tempdir().expect("tmp");
    let old_migrations = dir.path().join("migrations");
    std::fs::create_dir(&old_migrations).expect("dir");
    for name in ["20261128000001_labeling.sql", "20261128000002_ranking.sql"] {
        std::fs::copy(format!("../migrations/{name}"), old_migrations.join(name)).expect("copy");
    }
    let path = dir.path().join("old.sqlite");
    let opts = labeling_ui::db::connect_options(path.to_str().expect("utf8")).expect("opts");
    let pool = SqlitePool::connect_with(opts).await.expect("open");
    let old = sqlx::migrate::Migrator::new(old_migrations.as_path())
        .await
        .expect("old migrations");
    old.run(&pool).await.expect("migrate to the old schema");
    create_project(&pool, "eval", 1).await.expect("project");
    import_items(&pool, "eval", vec![item("a", &["x", "y"])])
        .await
        .expect("import");
    // The statement compare/src/blind.rs ran before the migration existed.
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS compare_pairs (
            item_id      INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
            grp          TEXT NOT NULL,
            first_model  TEXT NOT NULL,
            second_model TEXT NOT NULL
        )",
    )
    .execute(&pool)
    .await
    .expect("old table");
    sqlx::query("INSERT INTO compare_pairs VALUES (1, 'g', 'base', 'aligned')")
        .execute(&pool)
        .await
        .expect("old row");
    pool.close().await;
    let pool = labeling_ui::db::open(path.to_str().expect("utf8"))
        .await
        .expect("migrates over the old table");
    let row: (String, String) = sqlx::query_as("SELECT grp, second_model FROM compare_pairs")
        .fetch_one(&pool)
        .await
        .expect("row kept");
    assert_eq!(row, ("g".into(), "aligned".into()));
}

#[sqlx::test(migrations = "../migrations")]
async fn import_to_a_missing_project_is_not_found(pool: SqlitePool) {
    let err = import_items(&pool, "ghost", vec![item("a", &["x", "y"])])
        .await
        .expect_err("no project");
    assert!(matches!(err, AppError::NotFound(_)), "{err:?}");
}

#[test]
fn parses_messages_and_trl_conversational_pairs() {
    let text = r#"{"prompt":[{"role":"system","content":"s"},{"role":"user","content":"u"}],"chosen":[{"role":"assistant","content":"c"}],"rejected":[{"role":"assistant","content":"r"}]}"#;
    let items = parse_jsonl(text).expect("parse");
    assert_eq!(items[0].responses, vec!["c".to_string(), "r".to_string()]);
    assert!(matches!(&items[0].prompt, Prompt::Messages(m) if m.len() == 2));
    assert!(matches!(parse_jsonl("\n\n"), Err(AppError::BadRequest(_))));
    match parse_jsonl(&"x\n".repeat(1500)) {
        Err(AppError::Import(lines)) => {
            assert_eq!(lines.len(), 1001, "capped list plus a count");
            assert_eq!(lines[1000].message, "500 more bad rows not listed");
        }
        other => panic!("expected line errors, got {other:?}"),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn schema_enforces_client_id_uniqueness_and_foreign_keys(pool: SqlitePool) {
    create_project(&pool, "p", 1).await.expect("project");
    import_items(&pool, "p", vec![item("a", &["x", "y"])])
        .await
        .expect("import");
    let orphan = sqlx::query("INSERT INTO labels (assignment_id, client_id, choice, created_at) VALUES (999, 'c', 'tie', 0)")
        .execute(&pool)
        .await;
    assert!(orphan.is_err(), "foreign keys are on");
    sqlx::query("INSERT INTO users (id, name, role, password_hash, created_at) VALUES (1, 'u', 'labeler', 'h', 0)")
        .execute(&pool)
        .await
        .expect("user");
    sqlx::query("INSERT INTO assignments (id, project_id, item_id, comparison_id, user_id, swapped, created_at) VALUES (1, 1, 1, 1, 1, 0, 0)")
        .execute(&pool)
        .await
        .expect("assignment");
    let again = sqlx::query("INSERT INTO assignments (project_id, item_id, comparison_id, user_id, swapped, created_at) VALUES (1, 1, 1, 1, 1, 0)")
        .execute(&pool)
        .await;
    assert!(again.is_err(), "one assignment per comparison and labeler");
    let ins =
        "INSERT INTO labels (assignment_id, client_id, choice, created_at) VALUES (1, ?, 'tie', 0)";
    sqlx::query(ins)
        .bind("c1")
        .execute(&pool)
        .await
        .expect("first label");
    assert!(
        sqlx::query(ins).bind("c1").execute(&pool).await.is_err(),
        "client id is unique"
    );
    assert!(
        sqlx::query(ins).bind("c2").execute(&pool).await.is_err(),
        "one live label per assignment"
    );
}

#[tokio::test]
async fn open_creates_a_wal_database_from_a_path_or_url() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("labels.sqlite");
    let pool = labeling_ui::db::open(path.to_str().expect("utf8"))
        .await
        .expect("open");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&pool)
        .await
        .expect("pragma");
    assert_eq!(fk, 1);
    pool.close().await;
    let url = format!("sqlite://{}", path.display());
    let pool = labeling_ui::db::open(&url).await.expect("reopen by URL");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projects")
        .fetch_one(&pool)
        .await
        .expect("migrated");
    assert_eq!(n, 0);
}
