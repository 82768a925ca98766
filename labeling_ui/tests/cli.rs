//! `rudder label` subcommands end to end on a temp database (as the `cli` crate will call them).

use clap::Parser;
use labeling_ui::cli::{run, LabelArgs, LabelCommand};
use labeling_ui::AppError;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    label: LabelArgs,
}

fn parse(args: &[&str]) -> LabelArgs {
    let argv = std::iter::once("label").chain(args.iter().copied());
    Wrapper::try_parse_from(argv).expect("parses").label
}

#[tokio::test]
async fn create_import_export_through_the_cli() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("l.sqlite").display());
    let items = dir.path().join("items.jsonl");
    std::fs::write(
        &items,
        "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\",\"c\"]}\n",
    )
    .expect("write");
    run(parse(&[
        "create-project",
        "proj",
        "--overlap",
        "2",
        "--db",
        &db,
    ]))
    .await
    .expect("create");
    run(parse(&["add-user", "ann", "--role", "admin", "--db", &db]))
        .await
        .expect("user");
    let import = [
        "import",
        "--project",
        "proj",
        items.to_str().expect("utf8"),
        "--db",
        &db,
    ];
    run(parse(&import)).await.expect("import");
    let out = dir.path().join("prefs.jsonl");
    let export = [
        "export",
        "--project",
        "proj",
        "--out",
        out.to_str().expect("utf8"),
        "--ties",
        "margin",
        "--db",
        &db,
    ];
    let args = parse(&export);
    assert!(matches!(
        args.command,
        LabelCommand::Export { raw: false, .. }
    ));
    run(args).await.expect("export");
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        "",
        "nothing labeled yet"
    );
    std::fs::write(&items, "{\"prompt\":\"p\",\"responses\":[\"only\"]}\n").expect("write");
    match run(parse(&import)).await {
        Err(AppError::Import(lines)) => assert_eq!(lines[0].line, 1),
        other => panic!("expected line errors, got {other:?}"),
    }
}

#[test]
fn every_subcommand_needs_a_db() {
    let no_db = Wrapper::try_parse_from(["label", "serve"]);
    if std::env::var_os("RUDDER_LABEL_DB").is_none() {
        assert!(no_db.is_err());
    }
    let serve = parse(&["serve", "--db", "x.sqlite"]);
    match serve.command {
        LabelCommand::Serve { addr, .. } => assert_eq!(addr.to_string(), "127.0.0.1:8080"),
        _ => panic!("serve"),
    }
    assert!(
        Wrapper::try_parse_from(["label", "add-user", "bob", "--role", "root", "--db", "x"])
            .is_err()
    );
}

#[tokio::test]
async fn ranking_project_through_the_cli() {
    use labeling_ui::ranking::{self, RankingSubmission};
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("r.sqlite").display());
    assert!(
        Wrapper::try_parse_from([
            "label",
            "create-project",
            "x",
            "--mode",
            "ranking",
            "--db",
            &db
        ])
        .is_err(),
        "ranking needs --k"
    );
    let pairwise_k = parse(&["create-project", "x", "--k", "4", "--db", &db]);
    assert!(matches!(
        run(pairwise_k).await,
        Err(AppError::BadRequest(_))
    ));
    let create = [
        "create-project",
        "rk",
        "--mode",
        "ranking",
        "--k",
        "3",
        "--db",
        &db,
    ];
    run(parse(&create)).await.expect("create");
    run(parse(&[
        "add-user", "ann", "--role", "labeler", "--db", &db,
    ]))
    .await
    .expect("user");
    let items = dir.path().join("items.jsonl");
    std::fs::write(
        &items,
        "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\",\"c\"]}\n",
    )
    .expect("write");
    let file = items.to_str().expect("utf8");
    run(parse(&["import", "--project", "rk", file, "--db", &db]))
        .await
        .expect("import");

    // One strict ranking of the three (3 pairs), stored through the queue functions.
    let pool = labeling_ui::db::open(&db).await.expect("open");
    let user: i64 = sqlx::query_scalar("SELECT id FROM users WHERE name = 'ann'")
        .fetch_one(&pool)
        .await
        .expect("user id");
    let info = labeling_ui::db::project_info(&pool, "rk")
        .await
        .expect("project");
    let mut conn = pool.acquire().await.expect("conn");
    let id = ranking::next(&mut conn, user, info.id, 3)
        .await
        .expect("next")
        .expect("item");
    let s = RankingSubmission {
        user_id: user,
        assignment_id: id,
        client_id: "c".into(),
        tiers: vec![vec![0], vec![1], vec![2]],
        unacceptable: vec![],
    };
    ranking::submit(&mut conn, &s).await.expect("submit");
    drop(conn);

    let out = dir.path().join("out.jsonl");
    let out_s = out.to_str().expect("utf8");
    let rows = |extra: &'static [&'static str]| {
        let mut a = vec!["export", "--project", "rk", "--out", out_s, "--db", &db];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    for (extra, want) in [
        (&[][..], 3),
        (&["--max-pairs-per-ranking", "2"][..], 2),
        (&["--raw"][..], 1),
    ] {
        let args: Vec<String> = rows(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(parse(&args)).await.expect("export");
        let text = std::fs::read_to_string(&out).expect("read");
        assert_eq!(text.lines().count(), want, "{extra:?}: {text}");
    }
}
