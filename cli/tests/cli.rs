//! The binary end to end on the tiny fixture: export, generate, logprobs, label generate, and
//! bad input giving one error line and a non-zero exit.
use std::path::{Path, PathBuf};
use std::process::Command;

fn rudder(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(args)
        .output()
        .unwrap()
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that the command failed with one clear error (no panic) naming every `needle`.
fn fails(out: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "no `{n}` in: {err}");
    }
}

fn rows(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn export_generate_and_score() {
    let d = tempfile::tempdir().unwrap();
    let hf = d.path().join("hf");
    ok(&rudder(&[
        "export",
        "--model",
        &fixture("tiny-qwen3"),
        "--out",
        hf.to_str().unwrap(),
    ]));
    let prompts = d.path().join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"hello\", \"id\": 7}\n{\"prompt\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
    )
    .unwrap();
    let gen = d.path().join("g.jsonl");
    let args = [
        "generate",
        "--model",
        hf.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
    ];
    ok(&rudder(
        &[
            &args[..],
            &["--out", gen.to_str().unwrap(), "--max-new-tokens", "6"],
        ]
        .concat(),
    ));
    let g = rows(&gen);
    assert_eq!(g.len(), 2);
    assert_eq!(g[0]["id"], 7, "other fields are kept");
    assert!(g.iter().all(|r| r["completion"].is_string()));
    // Seeded sampling is reproducible.
    let again = d.path().join("g2.jsonl");
    ok(&rudder(
        &[
            &args[..],
            &["--out", again.to_str().unwrap(), "--max-new-tokens", "6"],
        ]
        .concat(),
    ));
    assert_eq!(rows(&again), g);
    let scored = d.path().join("s.jsonl");
    let data = d.path().join("pc.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"hello\", \"completion\": \" world\"}\n",
    )
    .unwrap();
    ok(&rudder(&[
        "logprobs",
        "--model",
        hf.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        scored.to_str().unwrap(),
    ]));
    let s = rows(&scored);
    let (sum, n) = (
        s[0]["logprob_sum"].as_f64().unwrap(),
        s[0]["num_tokens"].as_u64().unwrap(),
    );
    assert!(sum < 0.0 && n > 0);
    assert!((s[0]["logprob_mean"].as_f64().unwrap() - sum / n as f64).abs() < 1e-9);
}

#[test]
fn label_generate_imports_sampled_pairs() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("l.sqlite");
    let db = db.to_str().unwrap();
    ok(&rudder(&["label", "create-project", "p", "--db", db]));
    let prompts = d.path().join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\"}\n",
    )
    .unwrap();
    let args = [
        "label",
        "generate",
        "--db",
        db,
        "--project",
        "p",
        "--model",
        &fixture("tiny-llama"),
    ];
    ok(&rudder(
        &[
            &args[..],
            &[
                "--prompts",
                prompts.to_str().unwrap(),
                "--n",
                "3",
                "--max-new-tokens",
                "5",
            ],
        ]
        .concat(),
    ));
    let stats: serde_json::Value = serde_json::from_str(&ok(&rudder(&[
        "label",
        "stats",
        "--project",
        "p",
        "--db",
        db,
    ])))
    .unwrap();
    // 3 prompts x C(3, 2) pairs.
    assert_eq!(stats["comparisons"], 9, "{stats}");
}

#[test]
fn bad_input_is_one_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.jsonl");
    std::fs::write(&p, "{\"prompt\": \"ok\"}\n{\"prompt\": 3}\n").unwrap();
    let out = rudder(&[
        "generate",
        "--model",
        &fixture("tiny-llama"),
        "--prompts",
        p.to_str().unwrap(),
    ]);
    // What a prompt may be, not serde's "did not match any variant of untagged enum".
    let may_be = r#"bad.jsonl:2: field `prompt`: invalid type: integer `3`, expected a string, or a list of {"role", "content"} messages"#;
    fails(&out, &[may_be]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("untagged"));
    // A JSON error on line 2 names line 2 and the column, not serde's "line 1" of that line.
    std::fs::write(&p, "{\"prompt\": \"ok\"}\n{\"prompt\": oops}\n").unwrap();
    let out = rudder(&[
        "generate",
        "--model",
        &fixture("tiny-llama"),
        "--prompts",
        p.to_str().unwrap(),
    ]);
    fails(
        &out,
        &["bad.jsonl:2: invalid JSON at column 12: expected value"],
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("line 1"));
    let out = rudder(&["generate", "--model", "/no/such/model", "--prompt", "x"]);
    fails(&out, &["/no/such/model"]);
    let nope = d.path().join("nope.jsonl").display().to_string();
    let out = rudder(&[
        "generate",
        "--model",
        &fixture("tiny-llama"),
        "--prompts",
        &nope,
    ]);
    fails(&out, &["--prompts: ", "nope.jsonl: No such file"]);
}

/// A bad row stops the run naming file, line and field, and says how to skip such rows.
#[test]
fn a_bad_row_says_how_to_skip_it() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("s.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\":\"a\",\"completion\":\" b\"}\n{\"prompt\":\"a\"}\n",
    )
    .unwrap();
    let out = d.path().join("o").display().to_string();
    let (model, data) = (fixture("tiny-llama"), data.display().to_string());
    let args = [
        "sft", "--model", &model, "--data", &data, "--out", &out, "--quiet",
    ];
    fails(
        &rudder(&args),
        &["s.jsonl:2: field `completion`: missing", "--skip-bad-rows"],
    );
}

/// `rudder compare` checks every model, the reward model and the prompts before sampling.
#[test]
fn compare_checks_its_inputs_before_sampling() {
    let d = tempfile::tempdir().unwrap();
    let (tiny, out) = (fixture("tiny-llama"), d.path().join("o"));
    let nope = d.path().join("nope").display().to_string();
    let base = format!("base={tiny}");
    let other = format!("other={nope}");
    for (extra, needle) in [
        (
            vec!["--model", &base, "--reward-model", &nope],
            "--reward-model: ",
        ),
        (vec!["--model", &base, "--model", &other], "--model: "),
        (vec!["--model", &base, "--prompts", &nope], "--prompts: "),
    ] {
        let mut args = vec!["compare", "--out", out.to_str().unwrap()];
        args.extend(extra);
        let o = rudder(&args);
        fails(&o, &[needle, "nope"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("sampling"), "{err}");
    }
}

/// A preference file of one pair in `dir`.
fn one_pair(dir: &Path) -> PathBuf {
    let prefs = dir.join("p.jsonl");
    let row = "{\"prompt\":\"a\",\"chosen\":\" good\",\"rejected\":\" bad\"}\n";
    std::fs::write(&prefs, row).unwrap();
    prefs
}

#[test]
fn every_trainer_writes_a_resolved_config_that_runs_again() {
    let d = tempfile::tempdir().unwrap();
    let prefs = one_pair(d.path());
    let sft = d.path().join("s.jsonl");
    std::fs::write(&sft, "{\"prompt\":\"a\",\"completion\":\" b\"}\n").unwrap();
    for (stage, data, file) in [
        ("sft", &sft, "sft.toml"),
        ("dpo", &prefs, "dpo.toml"),
        ("reward", &prefs, "reward.toml"),
    ] {
        let out = d.path().join(stage);
        let mut cmd: Vec<&str> = if stage == "reward" {
            vec!["reward", "train"]
        } else {
            vec![stage]
        };
        let (model, data, out_s) = (
            fixture("tiny-llama"),
            data.to_str().unwrap().to_string(),
            out.to_str().unwrap().to_string(),
        );
        cmd.extend([
            "--model",
            &model,
            "--data",
            &data,
            "--out",
            &out_s,
            "--max-steps",
            "1",
            "--quiet",
        ]);
        ok(&rudder(&cmd));
        let resolved = out.join(file);
        let text = std::fs::read_to_string(&resolved).unwrap();
        assert!(
            text.contains("learning_rate") && text.contains("max_steps = 1"),
            "{stage}: {text}"
        );
        // The record is a valid --config: the same run again into a new folder.
        let again = d.path().join(format!("{stage}-again"));
        let mut cmd: Vec<&str> = if stage == "reward" {
            vec!["reward", "train"]
        } else {
            vec![stage]
        };
        cmd.extend([
            "--config",
            resolved.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ]);
        ok(&rudder(&cmd));
    }
}

/// A flag given on the command line overrides `--config` in both directions (a bool switched off
/// as well as on); a setting the command line leaves alone keeps the file's value, not the
/// flag's default.
#[test]
fn flags_override_the_config_file_both_ways() {
    let d = tempfile::tempdir().unwrap();
    let prefs = one_pair(d.path());
    let model = fixture("tiny-llama");
    for (file_value, flags, want) in [
        ("true", vec!["--precompute-ref", "false"], "false"),
        ("false", vec!["--precompute-ref"], "true"),
        ("true", vec![], "true"),
    ] {
        let cfg = d.path().join("dpo.toml");
        std::fs::write(
            &cfg,
            format!("precompute_ref = {file_value}\nbeta = 0.3\nmax_steps = 1\nquiet = true\n"),
        )
        .unwrap();
        let out = d.path().join(format!("run-{file_value}-{}", flags.len()));
        let (cfg_s, data, out_s) = (
            cfg.display().to_string(),
            prefs.display().to_string(),
            out.display().to_string(),
        );
        let mut cmd = vec![
            "dpo", "--config", &cfg_s, "--model", &model, "--data", &data,
        ];
        cmd.extend(["--out", &out_s]);
        cmd.extend(flags.iter().copied());
        let run = rudder(&cmd);
        ok(&run);
        // Logged to a pipe: plain text, no colour escape codes.
        let log = String::from_utf8_lossy(&run.stderr);
        assert!(log.contains("INFO") && !log.contains('\u{1b}'), "{log}");
        let resolved = std::fs::read_to_string(out.join("dpo.toml")).unwrap();
        assert!(
            resolved.contains(&format!("precompute_ref = {want}")),
            "{resolved}"
        );
        assert!(resolved.contains("beta = 0.3") && resolved.contains("max_steps = 1"));
        assert_eq!(out.join("ref_logps.json").exists(), want == "true");
    }
}

/// `rudder dpo --loss sigmoid,bco_pair,sft --loss-weights 0.8,0.2,1.0` (TRL's MPO) trains and
/// records the list; a weight count that differs, or an unknown name, is one error naming the
/// setting (and, for the name, the valid ones).
#[test]
fn dpo_takes_a_weighted_loss_list() {
    let d = tempfile::tempdir().unwrap();
    let prefs = one_pair(d.path()).display().to_string();
    let model = fixture("tiny-llama");
    let out = d.path().join("mpo");
    let out_s = out.display().to_string();
    let base = [
        "dpo",
        "--model",
        &model,
        "--data",
        &prefs,
        "--max-steps",
        "1",
        "--quiet",
    ];
    let with = |extra: &[&str]| {
        let mut cmd = base.to_vec();
        cmd.extend(["--out", &out_s]);
        cmd.extend(extra);
        rudder(&cmd)
    };
    ok(&with(&[
        "--loss",
        "sigmoid,bco_pair,sft",
        "--loss-weights",
        "0.8,0.2,1.0",
    ]));
    let resolved = std::fs::read_to_string(out.join("dpo.toml")).unwrap();
    assert!(
        resolved.contains("\"bco_pair\"") && resolved.contains("0.2"),
        "{resolved}"
    );
    fails(
        &with(&[
            "--loss",
            "sigmoid,bco_pair,sft",
            "--loss-weights",
            "0.8,0.2",
        ]),
        &["`loss_weights`", "--loss-weights", "2 weights", "3 losses"],
    );
    fails(
        &with(&["--loss", "sigmoid,kto"]),
        &["kto", "--loss", "bco_pair", "sigmoid_norm"],
    );
}

/// An OS error is said once, with the file it is about.
#[test]
fn a_missing_data_file_is_named_once() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope.jsonl").display().to_string();
    let out = d.path().join("o").display().to_string();
    let model = fixture("tiny-llama");
    let args = [
        "sft", "--model", &model, "--data", &missing, "--out", &out, "--quiet",
    ];
    let o = rudder(&args);
    // Named by its flag, before the model loads or the run folder is made.
    fails(&o, &["--data: ", "nope.jsonl"]);
    let err = String::from_utf8_lossy(&o.stderr);
    let os_error = err.lines().last().unwrap_or_default();
    assert_eq!(os_error.matches("os error 2").count(), 1, "{err}");
    assert!(!Path::new(&out).exists());
    let data = fixture("README.md");
    let args = [
        "dpo", "--model", &model, "--data", &data, "--ref", &missing, "--out", &out,
    ];
    fails(&rudder(&args), &["--ref: ", "nope.jsonl"]);
}

/// `--lora-dropout` trains (and is recorded for PEFT); out of range, or in PPO, it is one clear
/// error naming the field.
#[test]
fn lora_dropout_trains_sft_and_is_refused_where_it_cannot_apply() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("s.jsonl");
    std::fs::write(&data, "{\"prompt\":\"a\",\"completion\":\" b c\"}\n").unwrap();
    let (model, data) = (fixture("tiny-llama"), data.to_str().unwrap().to_string());
    let out = d.path().join("sft");
    let sft = |dropout: &str| {
        rudder(&[
            "sft",
            "--model",
            &model,
            "--data",
            &data,
            "--out",
            out.to_str().unwrap(),
            "--lora-r",
            "2",
            "--lora-dropout",
            dropout,
            "--max-steps",
            "2",
            "--quiet",
        ])
    };
    ok(&sft("0.1"));
    let text = std::fs::read_to_string(out.join("adapter_config.json")).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(cfg["lora_dropout"], 0.1, "{text}");
    let bad = sft("1.5");
    fails(&bad, &["lora_dropout"]);
    let prompts = d.path().join("p.jsonl");
    std::fs::write(&prompts, "{\"prompt\":\"a\"}\n").unwrap();
    let ppo = rudder(&[
        "ppo",
        "--model",
        &model,
        "--reward-model",
        &model,
        "--prompts",
        prompts.to_str().unwrap(),
        "--out",
        d.path().join("ppo").to_str().unwrap(),
        "--lora-r",
        "2",
        "--lora-dropout",
        "0.1",
    ]);
    fails(&ppo, &["lora_dropout"]);
}

/// `rudder bench generate` on a prompts file with LoRA adapters: the first `--batch` prompts,
/// stopping at EOS, one JSON line with the rate.
#[test]
fn bench_generate_runs_a_prompts_file_with_adapters() {
    let d = tempfile::tempdir().unwrap();
    let prompts = d.path().join("p.jsonl");
    let rows = "{\"prompt\":\"a b\"}\n{\"prompt\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n";
    std::fs::write(&prompts, rows).unwrap();
    let out = ok(&rudder(&[
        "bench",
        "generate",
        "--model",
        &fixture("tiny-llama"),
        "--prompts",
        prompts.to_str().unwrap(),
        "--batch",
        "2",
        "--new-tokens",
        "4",
        "--lora-r",
        "2",
        "--repeats",
        "1",
    ]));
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (line["batch"].as_u64(), line["lora_r"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(line["new_tokens_per_s"].as_f64().unwrap() > 0.0, "{line}");
    let bad = rudder(&[
        "bench",
        "generate",
        "--model",
        &fixture("tiny-llama"),
        "--prompts",
        "/no/such/prompts.jsonl",
    ]);
    fails(&bad, &["/no/such/prompts.jsonl"]);
    // Fewer prompts than the batch: an error, not a smaller batch reported as the asked one.
    let short = rudder(&[
        "bench",
        "generate",
        "--model",
        &fixture("tiny-llama"),
        "--prompts",
        prompts.to_str().unwrap(),
        "--batch",
        "3",
    ]);
    fails(&short, &["has 2 prompts"]);
}
