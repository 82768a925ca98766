//! `rudder kto` end to end on the tiny fixture: the flags in `--help`, a run on unpaired rows
//! with its settings recorded, a `--config` file under the flags, `rudder estimate --stage kto`,
//! and one clear error for a bad row or setting.
use std::path::{Path, PathBuf};
use std::process::Command;

fn rudder(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(args)
        .output()
        .expect("runs rudder")
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

fn ok(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "no `{n}` in: {err}");
    }
}

fn unpaired(dir: &Path) -> String {
    let path = dir.join("kto.jsonl");
    let rows = [
        r#"{"prompt": "What is two plus two?", "completion": " Four.", "label": true}"#,
        r#"{"prompt": "What is two plus two?", "completion": " Five, of course.", "label": false}"#,
        r#"{"prompt": [{"role": "user", "content": "Say hello."}], "completion": [{"role": "assistant", "content": "Hello, world!"}], "label": true}"#,
        r#"{"prompt": [{"role": "user", "content": "Say hello."}], "completion": [{"role": "assistant", "content": "No."}], "label": false}"#,
    ];
    std::fs::write(&path, rows.join("\n") + "\n").expect("writes rows");
    path.display().to_string()
}

#[test]
fn kto_help_lists_its_flags() {
    let help = ok(&rudder(&["kto", "--help"]));
    for flag in [
        "--model",
        "--ref",
        "--data",
        "--eval-data",
        "--loss",
        "apo_zero_unpaired",
        "--beta",
        "--desirable-weight",
        "--undesirable-weight",
        "--precompute-ref",
        "--max-seq-len",
        "--lora-r",
        "--batch-size",
        "--config",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn kto_trains_on_unpaired_rows_and_names_bad_input() {
    let d = tempfile::tempdir().expect("temp dir");
    let data = unpaired(d.path());
    let model = fixture("tiny-llama");
    let out = d.path().join("run");
    let out_s = out.display().to_string();
    let config = d.path().join("kto.toml");
    std::fs::write(
        &config,
        "beta = 0.3\nundesirable_weight = 1.5\nbatch_size = 2\n",
    )
    .expect("writes config");
    let config = config.display().to_string();
    let base = [
        "kto", "--model", &model, "--data", &data, "--config", &config, "--quiet",
    ];
    let with = |extra: &[&str]| rudder(&[&base[..], extra].concat());
    let stdout = ok(&with(&[
        "--out",
        &out_s,
        "--max-steps",
        "2",
        "--precompute-ref",
        "--desirable-weight",
        "0.8",
    ]));
    assert!(stdout.contains("2 desirable, 2 undesirable"), "{stdout}");
    let resolved = std::fs::read_to_string(out.join("kto.toml")).expect("kto.toml");
    for want in [
        "beta = 0.3",
        "undesirable_weight = 1.5",
        "desirable_weight = 0.8",
        "precompute_ref = true",
        "batch_size = 2",
    ] {
        assert!(resolved.contains(want), "{want} missing from {resolved}");
    }
    assert!(out.join("kto_run.json").is_file() && out.join("model.safetensors").is_file());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    // A shuffled batch of 2 may hold one side only (then TRL logs no margin either).
    assert!(
        metrics.contains("rewards/") && metrics.contains("\"kl\""),
        "{metrics}"
    );
    fails(
        &with(&["--out", &out_s, "--desirable-weight", "0"]),
        &["`desirable_weight`", "> 0"],
    );
    fails(
        &with(&["--out", &out_s, "--batch-size", "1"]),
        &["`batch_size`", "at least 2"],
    );
    // `rudder estimate --stage kto`: each row and its mismatched row, plus the reference.
    let est = ok(&rudder(&[
        "estimate", "--model", &model, "--stage", "kto", "--data", &data,
    ]));
    assert!(
        est.contains("estimate: kto") && est.contains("8 rows"),
        "{est}"
    );
    assert!(est.contains("plus 1 reference forward"), "{est}");
    let bad = d.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"prompt\": \"a\", \"completion\": \" b\", \"label\": 1}\n",
    )
    .expect("writes");
    let bad = bad.display().to_string();
    let cmd = ["kto", "--model", &model, "--data", &bad, "--out", &out_s];
    fails(&rudder(&cmd), &["bad.jsonl:1", "`label`"]);
}
