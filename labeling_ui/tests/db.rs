//! Database-level tests on the root migrations.

use labeling_ui::{create_project, import_items, parse_jsonl, AppError, ImportItem, Prompt};
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
