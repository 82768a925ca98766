//! `rudder pipeline` on the tiny fixture: SFT -> reward -> DPO -> compare end to end from a
//! preference file, a second run that skips every finished stage, broken stage configs that
//! name the stage and the field, and the labeling route stopping with the URL to open.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rudder(args: &[&str]) -> Output {
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

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Small data: SFT rows, preference pairs, and two groups of two rephrasings to compare on.
fn data(d: &Path) -> (String, String, String) {
    let w = |name: &str, body: &str| {
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let sft = w(
        "sft.jsonl",
        &(0..4)
            .map(|i| format!("{{\"prompt\": \"q{i}\", \"completion\": \"answer {i}\"}}\n"))
            .collect::<String>(),
    );
    let prefs = w("prefs.jsonl", &(0..4).map(|i| format!("{{\"prompt\": \"q{i}\", \"chosen\": \"good {i}\", \"rejected\": \"bad bad {i}\"}}\n")).collect::<String>());
    let prompts = w(
        "prompts.jsonl",
        "{\"id\": \"g1/a\", \"group\": \"g1\", \"variant\": \"original\", \"prompt\": [{\"role\": \"user\", \"content\": \"Say <b>hi</b>\"}]}\n\
         {\"id\": \"g1/b\", \"group\": \"g1\", \"variant\": \"constrained\", \"prompt\": [{\"role\": \"user\", \"content\": \"Say hi in 2 words\"}]}\n\
         {\"id\": \"g2/a\", \"group\": \"g2\", \"variant\": \"original\", \"prompt\": \"Fix it.\"}\n",
    );
    (sft, prefs, prompts)
}

fn config(d: &Path, out: &Path, extra_dpo: &str) -> PathBuf {
    let (sft, prefs, prompts) = data(d);
    let toml = format!(
        "out = {out:?}\nmodel = {model:?}\npolicy = \"dpo\"\n\n\
         [sft]\ndata = {sft:?}\nmax_steps = 2\nbatch_size = 2\nlearning_rate = 1e-3\nquiet = true\n\n\
         [preferences]\nfile = {prefs:?}\n\n\
         [reward]\nmax_steps = 2\nbatch_size = 2\nquiet = true\n\n\
         [dpo]\nmax_steps = 2\nbatch_size = 2\nbeta = 0.1\nquiet = true\n{extra_dpo}\n\
         [compare]\nprompts = {prompts:?}\nmax_new_tokens = 6\nsamples = 2\n",
        out = out.display().to_string(),
        model = fixture("tiny-llama"),
    );
    let p = d.join("pipeline.toml");
    std::fs::write(&p, toml).unwrap();
    p
}

#[test]
fn pipeline_runs_end_to_end_then_skips_finished_stages() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let cfg = config(d.path(), &out, "");
    // A path inside `out` is an earlier stage's output: not required before the run.
    let reward = out.join("reward").display().to_string();
    let body = std::fs::read_to_string(&cfg).unwrap();
    let body = body.replace(
        "[compare]\n",
        &format!("[compare]\nreward_model = {reward:?}\n"),
    );
    std::fs::write(&cfg, body).unwrap();
    let o = rudder(&["pipeline", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    // Ends with the report as an absolute file:// URL; the total's time is the wall time.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let index = std::fs::canonicalize(out.join("compare/index.html")).unwrap();
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!("report: file://{}", index.display()),
        "{stdout}"
    );
    assert!(
        stdout.contains("[total] cost:") && stdout.contains("wall clock"),
        "{stdout}"
    );
    for stage in ["sft", "reward", "dpo", "compare"] {
        assert!(
            out.join(stage).join(".rudder-stage.json").exists(),
            "{stage}: {}",
            text(&o)
        );
    }
    let index = std::fs::read_to_string(out.join("compare/index.html")).unwrap();
    assert!(index.contains("Say &lt;b&gt;hi&lt;/b&gt;") && !index.contains("<b>hi</b>"));
    let results = std::fs::read_to_string(out.join("compare/results.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = results
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 3 prompts x 2 samples x (base, sft, aligned), all scored by the pipeline's reward model.
    assert_eq!(rows.len(), 18);
    assert!(rows.iter().all(|r| r["reward"].is_f64()));
    assert!(rows
        .iter()
        .filter(|r| r["model"] == "base")
        .all(|r| r["kl"] == 0.0));
    // Finished stages are never resumed: their checkpoints are removed.
    let names: Vec<String> = std::fs::read_dir(out.join("sft"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("checkpoint-")),
        "{names:?}"
    );
    let stamp = |p: &str| std::fs::metadata(out.join(p)).unwrap().modified().unwrap();
    let before = (stamp("sft/model.safetensors"), stamp("compare/index.html"));
    let o = rudder(&["pipeline", "--config", cfg.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for stage in ["sft", "reward", "dpo", "compare"] {
        assert!(
            t.contains(&format!("[{stage}] already complete")),
            "{stage}: {t}"
        );
    }
    assert!(!t.contains("running"), "{t}");
    assert_eq!(
        before,
        (stamp("sft/model.safetensors"), stamp("compare/index.html"))
    );
}

#[test]
fn broken_stage_configs_name_stage_and_field() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let cases = [
        ("lerning_rate = 0.1\n", "[dpo]", "`lerning_rate`"),
        ("loss = 3\n", "[dpo]", "`loss`"),
        ("warmup_steps = \"many\"\n", "[dpo]", "`warmup_steps`"),
        ("out = \"elsewhere\"\n", "[dpo]", "`out`"),
    ];
    for (extra, stage, field) in cases {
        let cfg = config(d.path(), &out, extra);
        // Skip the costly stages: only [sft] would run before [dpo]; drop it for this check.
        let body = std::fs::read_to_string(&cfg).unwrap();
        let start = body.find("[sft]").unwrap();
        let end = body.find("[preferences]").unwrap();
        let reward_s = body.find("[reward]").unwrap();
        let dpo_s = body.find("[dpo]").unwrap();
        let trimmed = format!(
            "{}{}{}",
            &body[..start],
            &body[end..reward_s],
            &body[dpo_s..]
        );
        std::fs::write(&cfg, trimmed).unwrap();
        let o = rudder(&["pipeline", "--config", cfg.to_str().unwrap()]);
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        assert!(t.contains(stage) && t.contains(field), "{extra}: {t}");
    }
    let cfg = d.path().join("bad.toml");
    std::fs::write(&cfg, format!("out = {:?}\nmodel = \"m\"\n[compare]\nsamples = 1\ntemprature = 0.5\n[preferences]\nfile = {:?}\n", out.display().to_string(), cfg.display().to_string())).unwrap();
    let t = text(&rudder(&["pipeline", "--config", cfg.to_str().unwrap()]));
    assert!(t.contains("[compare]") && t.contains("temprature"), "{t}");
    // Checked before any stage runs: [candidates] (sampled after SFT) and the pipeline's own
    // fill-ins, which a section may not set.
    let out_s = out.display().to_string();
    for (body, needles) in [
        (
            "[candidates]\nn = \"two\"\n",
            ["[candidates]", "invalid type"],
        ),
        ("[compare]\nmodels = [\"a=b\"]\n", ["[compare]", "`models`"]),
    ] {
        let toml = format!("out = {out_s:?}\nmodel = \"m\"\n[sft]\ndata = \"x\"\n{body}");
        std::fs::write(&cfg, toml).unwrap();
        let o = rudder(&["pipeline", "--config", cfg.to_str().unwrap()]);
        let t = text(&o);
        assert!(!o.status.success() && !t.contains("running"), "{t}");
        assert!(needles.iter().all(|n| t.contains(n)), "{body}: {t}");
    }
}

/// Every model and file the config names is checked before the first stage starts (or the
/// output folder is made), each error naming the section and the field.
#[test]
fn missing_inputs_fail_before_any_stage() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let cfg = config(d.path(), &out, "");
    let body = std::fs::read_to_string(&cfg).unwrap();
    let nope = d.path().join("nope").display().to_string();
    let quoted = |s: &str| format!("{s:?}");
    let (sft, prefs, prompts) = data(d.path());
    let cases = [
        (quoted(&fixture("tiny-llama")), "field `model`"),
        (quoted(&sft), "[sft] field `data`"),
        (quoted(&prefs), "[preferences] field `file`"),
        (quoted(&prompts), "[compare] field `prompts`"),
        ("[dpo]\n".into(), "[dpo] field `ref`"),
    ];
    for (old, needle) in cases {
        let new = match old.as_str() {
            "[dpo]\n" => format!("[dpo]\nref = {nope:?}\n"),
            _ => quoted(&nope),
        };
        std::fs::write(&cfg, body.replacen(&old, &new, 1)).unwrap();
        let o = rudder(&["pipeline", "--config", cfg.to_str().unwrap()]);
        let t = text(&o);
        assert!(
            !o.status.success() && t.contains(needle) && t.contains("nope"),
            "{t}"
        );
        assert!(!t.contains("running") && !out.exists(), "{needle}: {t}");
        assert!(!t.contains("FLOP counts"), "{t}");
    }
}

#[test]
fn labeling_route_stops_with_the_url() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let (_, _, prompts) = data(d.path());
    let cfg = d.path().join("p.toml");
    let body = format!(
        "out = {:?}\nmodel = {:?}\n[candidates]\nprompts = {prompts:?}\nn = 2\nmax_new_tokens = 4\n\
         [preferences]\nurl = \"http://127.0.0.1:8099\"\n[dpo]\nmax_steps = 1\nbatch_size = 2\nquiet = true\n\
         [compare]\nprompts = {prompts:?}\nmax_new_tokens = 4\n",
        out.display().to_string(),
        fixture("tiny-llama")
    );
    std::fs::write(&cfg, body).unwrap();
    let o = rudder(&["pipeline", "--config", cfg.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("stopped at [labels]: 0 of 3 comparisons labeled"),
        "{t}"
    );
    assert!(
        t.contains("http://127.0.0.1:8099") && t.contains("rudder label serve"),
        "{t}"
    );
    assert!(out.join("candidates/.rudder-stage.json").exists());
    // Again: candidates are not sampled twice, and it still waits for labels.
    let t = text(&rudder(&["pipeline", "--config", cfg.to_str().unwrap()]));
    assert!(
        t.contains("[candidates] already complete") && t.contains("stopped at [labels]"),
        "{t}"
    );
    // Label every comparison as the app stores labels, then the pipeline goes on to the end.
    let db = out.join("labels.sqlite");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(label_all(&db));
    let o = rudder(&["pipeline", "--config", cfg.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("[labels] exported 3 preference pairs"), "{t}");
    assert!(
        out.join("compare/index.html").exists() && out.join("dpo/.rudder-stage.json").exists(),
        "{t}"
    );
}

async fn label_all(db: &Path) {
    use sqlx::Row;
    let pool = labeling_ui::db::open(&db.display().to_string())
        .await
        .unwrap();
    labeling_ui::auth::add_user(&pool, "ann", labeling_ui::auth::Role::Labeler)
        .await
        .unwrap();
    let cs = sqlx::query("SELECT id, project_id, item_id FROM comparisons")
        .fetch_all(&pool)
        .await
        .unwrap();
    for (i, c) in cs.iter().enumerate() {
        let a: i64 = sqlx::query(
            "INSERT INTO assignments (project_id, item_id, comparison_id, user_id, swapped, created_at)
             VALUES (?, ?, ?, 1, 0, 0) RETURNING id",
        )
        .bind(c.get::<i64, _>(1))
        .bind(c.get::<i64, _>(2))
        .bind(c.get::<i64, _>(0))
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
        sqlx::query(
            "INSERT INTO labels (assignment_id, client_id, choice, created_at) VALUES (?, ?, ?, 0)",
        )
        .bind(a)
        .bind(format!("c{i}"))
        .bind(if i % 2 == 0 { "first" } else { "second" })
        .execute(&pool)
        .await
        .unwrap();
    }
}

#[test]
fn ppo_policy_runs_from_the_reward_stage() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let cfg = config(d.path(), &out, "");
    let body = std::fs::read_to_string(&cfg).unwrap();
    let (_, _, prompts) = data(d.path());
    let body = body.replace("policy = \"dpo\"", "policy = \"ppo\"")
        + &format!("\n[ppo]\nprompts = {prompts:?}\nmax_steps = 1\nbatch_size = 2\nmax_new_tokens = 4\nquiet = true\n");
    std::fs::write(&cfg, body).unwrap();
    let o = rudder(&["pipeline", "--config", cfg.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        out.join("ppo/.rudder-stage.json").exists() && !out.join("dpo").exists(),
        "{t}"
    );
    let marker: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("ppo/.rudder-stage.json")).unwrap())
            .unwrap();
    assert!(
        marker["config"]["reward_model"]
            .as_str()
            .unwrap()
            .ends_with("reward"),
        "{marker}"
    );
    assert!(out.join("compare/index.html").exists(), "{t}");
}
