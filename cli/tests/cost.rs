//! `rudder generate --cost-out` and `rudder compare`'s cost on the tiny fixture: the same greedy
//! batches in both, so generate's token counts must equal the completions compare recorded.
use std::path::PathBuf;
use std::process::{Command, Output};

fn rudder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(args)
        .output()
        .expect("run rudder")
}

fn ok(out: &Output) -> (String, String) {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stderr: {err}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

fn json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("read json");
    serde_json::from_str(&text).expect("valid json")
}

#[test]
fn generate_cost_out_matches_the_generated_tokens() {
    let d = tempfile::tempdir().expect("tempdir");
    let prompts = d.path().join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"id\": \"a\", \"prompt\": \"hi\"}\n{\"id\": \"b\", \"prompt\": \"a longer prompt here\"}\n{\"id\": \"c\", \"prompt\": \"ok\"}\n",
    )
    .expect("write prompts");
    let (p, model) = (prompts.to_str().expect("utf-8"), fixture("tiny-llama"));
    let common = [
        "--prompts",
        p,
        "--temperature",
        "0",
        "--max-new-tokens",
        "5",
        "--batch-size",
        "2",
    ];

    // compare records every completion's token count (results.jsonl).
    let cmp = d.path().join("cmp");
    let base = format!("base={model}");
    let args = [
        &[
            "compare",
            "--model",
            &base,
            "--out",
            cmp.to_str().expect("utf-8"),
        ],
        &common[..],
    ];
    let (stdout, _) = ok(&rudder(&args.concat()));
    assert!(
        stdout.contains("sampling") && stdout.contains("FLOPs"),
        "{stdout}"
    );
    let results = std::fs::read_to_string(cmp.join("results.jsonl")).expect("results");
    let generated: u64 = results
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("row"))
        .map(|r| r["completion_tokens"].as_u64().expect("count"))
        .sum();
    let summary = json(&cmp.join("summary.json"));
    let side = &summary["models"][0]["cost"];
    assert_eq!(side["generated_tokens"].as_u64(), Some(generated));
    let html = std::fs::read_to_string(cmp.join("index.html")).expect("html");
    assert!(html.contains("<h2 id=\"cost\">Cost of sampling</h2>"));

    // generate, same batches: the same counts, on stderr and in --cost-out only.
    let out = d.path().join("cost.json");
    let args = [
        &[
            "generate",
            "--model",
            &model,
            "--cost-out",
            out.to_str().expect("utf-8"),
        ],
        &common[..],
    ];
    let (stdout, stderr) = ok(&rudder(&args.concat()));
    assert!(stdout
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    assert!(
        !stdout.contains("cost"),
        "cost lines go to stderr: {stdout}"
    );
    assert!(
        stderr.contains(&format!("generated {generated} tokens for 3 rows")),
        "{stderr}"
    );
    assert!(
        stderr.contains("padded") && stderr.contains("CO2-eq"),
        "{stderr}"
    );
    let c = json(&out);
    assert_eq!(c["rows"], 3);
    assert_eq!(c["generated_tokens"].as_u64(), Some(generated));
    assert_eq!(c["cost"]["tokens"], side["cost"]["tokens"]);
    assert_eq!(c["cost"]["padded_tokens"], side["cost"]["padded_tokens"]);
    assert_eq!(c["cost"]["flops"], side["cost"]["flops"]);
    let tokens = c["cost"]["tokens"].as_u64().expect("tokens");
    assert!(tokens > generated && c["cost"]["padded_tokens"].as_u64() > Some(tokens));
    assert!(c["cost"]["flops"].as_f64().is_some_and(|f| f > 0.0));
    assert!(matches!(
        c["cost"]["energy"].as_str(),
        Some("measured" | "estimated")
    ));
    assert!(c["cost"]["phases_s"]["generation"].as_f64().is_some());
}

/// Every trainer on rows of different lengths in one batch of 2: the summary's cost block
/// counts more computed (padded) positions than non-pad tokens.
#[test]
fn every_trainer_reports_padded_and_non_pad_tokens() {
    let d = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, text).expect("write data");
        p.to_str().expect("utf-8").to_string()
    };
    let sft = write(
        "sft.jsonl",
        "{\"prompt\":\"a\",\"completion\":\" b\"}\n{\"prompt\":\"a much longer prompt\",\"completion\":\" and answer\"}\n",
    );
    let prefs = write(
        "prefs.jsonl",
        "{\"prompt\":\"a\",\"chosen\":\" a good long answer\",\"rejected\":\" bad\"}\n{\"prompt\":\"b c\",\"chosen\":\" ok\",\"rejected\":\" no\"}\n",
    );
    let prompts = write(
        "prompts.jsonl",
        "{\"prompt\":\"hi\"}\n{\"prompt\":\"a longer prompt here\"}\n",
    );
    let (model, rm) = (fixture("tiny-llama"), fixture("tiny-llama-rm"));
    let stages: [(&[&str], Vec<&str>); 4] = [
        (&["sft"], vec!["--data", &sft]),
        (&["dpo"], vec!["--data", &prefs]),
        (&["reward", "train"], vec!["--data", &prefs]),
        (
            &["ppo"],
            vec![
                "--prompts",
                &prompts,
                "--reward-model",
                &rm,
                "--max-new-tokens",
                "4",
            ],
        ),
    ];
    for (cmd, data) in stages {
        let out = d.path().join(cmd[0]);
        let common = ["--model", &model, "--out", out.to_str().expect("utf-8")];
        let flags = ["--max-steps", "1", "--batch-size", "2", "--quiet"];
        let (_, stderr) = ok(&rudder(&[cmd, &common[..], &data, &flags[..]].concat()));
        let c = &json(&out.join("summary.json"))["cost"];
        let (tokens, padded) = (c["tokens"].as_u64(), c["padded_tokens"].as_u64());
        assert!(tokens > Some(0) && padded > tokens, "{cmd:?}: {c}");
        let line = format!(
            "{} tokens ({} padded)",
            tokens.unwrap_or(0),
            padded.unwrap_or(0)
        );
        assert!(stderr.contains(&line), "{cmd:?}: {stderr}");
    }
}
