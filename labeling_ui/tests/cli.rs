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
