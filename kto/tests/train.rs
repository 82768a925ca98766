//! `train_kto` end to end on the tiny fixtures: full fine-tuning against a different frozen
//! reference on unpaired rows, LoRA against its own base on a paired file (split as TRL does),
//! live and precomputed references giving the same run, and the settings' checks.
use kto::{train_kto, KtoConfig, KtoLoss};
use lm::{LoadOptions, Pretrained};
use std::path::{Path, PathBuf};
use train::StageSettings;
use train::{Params, TrainerConfig};

type Res<T> = Result<T, Box<dyn std::error::Error>>;
type R = Res<()>;

const QA: [(&str, &str, &str); 4] = [
    (
        "What is the capital of France?",
        "The capital of France is Paris.",
        "It is London, I think.",
    ),
    (
        "What is two plus two?",
        "Four.",
        "Two plus two is five, of course.",
    ),
    (
        "Tell me about the fox.",
        "The quick brown fox jumps over the lazy dog.",
        "No.",
    ),
    (
        "Say hello.",
        "Hello, world! How are you today?",
        "Hello there.",
    ),
];

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

fn write(dir: &Path, name: &str, rows: &[serde_json::Value]) -> std::io::Result<PathBuf> {
    let text: String = rows.iter().map(|l| format!("{l}\n")).collect();
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Eight unpaired rows, desirable and undesirable interleaved; messages and strings.
fn unpaired(dir: &Path) -> std::io::Result<PathBuf> {
    let m = |role: &str, t: &str| serde_json::json!([{"role": role, "content": t}]);
    let mut rows = vec![];
    for (i, (p, c, r)) in QA.into_iter().enumerate() {
        if i % 2 == 0 {
            rows.push(serde_json::json!({"prompt": m("user", p), "completion": m("assistant", c), "label": true}));
            rows.push(serde_json::json!({"prompt": m("user", p), "completion": m("assistant", r), "label": false}));
        } else {
            rows.push(
                serde_json::json!({"prompt": format!("{p} "), "completion": r, "label": false}),
            );
            rows.push(
                serde_json::json!({"prompt": format!("{p} "), "completion": c, "label": true}),
            );
        }
    }
    write(dir, "unpaired.jsonl", &rows)
}

/// The same four questions as preference pairs (TRL's paired format).
fn paired(dir: &Path) -> std::io::Result<PathBuf> {
    let m = |role: &str, t: &str| serde_json::json!([{"role": role, "content": t}]);
    let rows: Vec<_> = QA
        .iter()
        .map(|(p, c, r)| serde_json::json!({"prompt": m("user", p), "chosen": m("assistant", c), "rejected": m("assistant", r)}))
        .collect();
    write(dir, "pairs.jsonl", &rows)
}

fn trainer(out: &Path, steps: usize) -> TrainerConfig {
    TrainerConfig {
        learning_rate: 2e-3,
        batch_size: 4,
        max_steps: Some(steps),
        warmup_steps: 0,
        schedule: train::ScheduleKind::Constant,
        log_every: 1,
        save_every: None,
        out: out.to_path_buf(),
        quiet: true,
        ..Default::default()
    }
}

fn load(spec: &str, trainable: bool) -> Result<Pretrained, lm::Error> {
    let opts = LoadOptions {
        trainable,
        ..Default::default()
    };
    lm::load(spec, &opts)
}

fn snapshot(params: &Params) -> Res<Vec<(String, Vec<f32>)>> {
    let mut out = vec![];
    for (n, v) in params.iter() {
        let values = v.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        out.push((n.to_string(), values));
    }
    Ok(out)
}

#[test]
fn full_finetuning_lowers_the_loss_raises_the_margin_and_moves_every_weight() -> R {
    let dir = tempfile::tempdir()?;
    let data = unpaired(dir.path())?;
    let cfg = KtoConfig {
        model: Some(fixture("tiny-llama")),
        ref_model: Some(fixture("tiny-llama-ref")),
        data: Some(data.clone()),
        eval_data: Some(data),
        beta: 0.5,
        undesirable_weight: 1.5,
        ..Default::default()
    };
    let pre = load(&fixture("tiny-llama"), true)?;
    let before = snapshot(&Params::new(pre.params.clone())?)?;
    let live: Vec<_> = pre.params.clone();
    let out = dir.path().join("run");
    let o = train_kto(pre, &LoadOptions::default(), &cfg, &trainer(&out, 8))?;
    let (l0, l1) = (o.eval_before["loss"], o.eval_after["loss"]);
    assert!(l1 < 0.5 * l0, "eval loss must fall: {l0} -> {l1}");
    let (m0, m1) = (
        o.eval_before["rewards/margins"],
        o.eval_after["rewards/margins"],
    );
    assert!(m1 > m0 + 1.0, "margin {m0} -> {m1}");
    assert_eq!((o.train_data.desirable, o.train_data.undesirable), (4, 4));
    let after = snapshot(&Params::new(live)?)?;
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        assert!(a != b, "{name} did not change");
    }
    let back = load(out.to_str().unwrap_or_default(), false)?;
    assert_eq!(back.model.config.vocab_size, 384);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    for key in [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
        "\"kl\"",
    ] {
        assert!(metrics.contains(key), "{key} missing");
    }
    assert!(out.join("kto.svg").is_file() && out.join("kto_run.json").is_file());
    Ok(())
}

#[test]
fn lora_on_split_pairs_uses_its_base_and_precompute_gives_the_same_run() -> R {
    let dir = tempfile::tempdir()?;
    let base = KtoConfig {
        model: Some(fixture("tiny-llama")),
        data: Some(paired(dir.path())?),
        beta: 0.5,
        lora: lm::lora::LoraConfig {
            lora_r: Some(4),
            lora_targets: vec!["all-linear".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let run = |precompute: bool, name: &str| -> Res<kto::KtoOutcome> {
        let cfg = KtoConfig {
            precompute_ref: precompute,
            ..base.clone()
        };
        let model = load(&fixture("tiny-llama"), false)?;
        let out = dir.path().join(name);
        Ok(train_kto(
            model,
            &LoadOptions::default(),
            &cfg,
            &trainer(&out, 6),
        )?)
    };
    let live = run(false, "live")?;
    assert!(live.train_data.paired && live.train_data.rows == 8);
    // Step 1: policy = base (B = 0), so r = 0, the KL estimate is 0 and every row's loss is ½.
    let losses = &live.summary.losses;
    assert!((losses[0] - 0.5).abs() < 1e-6, "{losses:?}");
    assert!(losses[5] < losses[0], "{losses:?}");
    let pre = run(true, "pre")?;
    for (a, b) in losses.iter().zip(&pre.summary.losses) {
        assert!((a - b).abs() < 1e-4, "live {a} vs precomputed {b}");
    }
    assert!(dir.path().join("pre/adapter_model.safetensors").is_file());
    // Every adapter matrix moved (B starts at zero; A moves once B is non-zero).
    let changed = pre.model.lora_tensors();
    let mut fresh = load(&fixture("tiny-llama"), false)?.model;
    let spec = base.lora()?.ok_or("lora_r is set")?;
    let init = fresh.attach_lora(&spec, 42)?;
    for ((name, t), (_, v)) in changed.iter().zip(&init) {
        let d = (t - v.as_tensor())?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d > 0.0, "{name} did not change");
    }
    Ok(())
}

#[test]
fn apo_zero_unpaired_trains_without_mismatched_rows() -> R {
    let dir = tempfile::tempdir()?;
    let cfg = KtoConfig {
        model: Some(fixture("tiny-llama")),
        ref_model: Some(fixture("tiny-llama-ref")),
        data: Some(unpaired(dir.path())?),
        loss: KtoLoss::ApoZeroUnpaired,
        ..Default::default()
    };
    let out = dir.path().join("run");
    let o = train_kto(
        load(&fixture("tiny-llama"), true)?,
        &LoadOptions::default(),
        &cfg,
        &trainer(&out, 6),
    )?;
    let losses = &o.summary.losses;
    assert!(losses[5] < losses[0], "{losses:?}");
    Ok(())
}

fn error_of(r: Result<kto::KtoOutcome, kto::Error>) -> String {
    r.err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn settings_and_rows_are_checked_with_the_field_named() -> R {
    let dir = tempfile::tempdir()?;
    let data = unpaired(dir.path())?;
    let cfg = KtoConfig {
        model: Some(fixture("tiny-llama")),
        data: Some(data),
        ..Default::default()
    };
    let bad = |c: KtoConfig| {
        c.validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    for field in ["desirable_weight", "undesirable_weight", "beta"] {
        let mut c = cfg.clone();
        match field {
            "desirable_weight" => c.desirable_weight = 0.0,
            "undesirable_weight" => c.undesirable_weight = -1.0,
            _ => c.beta = f64::NAN,
        }
        let e = bad(c);
        assert!(
            e.contains(&format!("`{field}`")) && e.contains("> 0"),
            "{e}"
        );
    }
    assert!(bad(KtoConfig {
        data: None,
        ..cfg.clone()
    })
    .contains("--data"));
    let out = dir.path().join("run");
    let one = TrainerConfig {
        batch_size: 1,
        ..trainer(&out, 1)
    };
    let e = error_of(kto::run(&cfg, &one, &LoadOptions::default()));
    assert!(
        e.contains("`batch_size`") && e.contains("at least 2"),
        "{e}"
    );
    let rows = [
        serde_json::json!({"prompt": "Hi", "completion": " yes", "label": true}),
        serde_json::json!({"prompt": "Hi", "completion": " no", "label": "no"}),
    ];
    let bad_rows = write(dir.path(), "bad.jsonl", &rows)?;
    let c = KtoConfig {
        data: Some(bad_rows),
        ..cfg
    };
    let e = error_of(kto::run(&c, &trainer(&out, 1), &LoadOptions::default()));
    assert!(e.contains("bad.jsonl:2") && e.contains("`label`"), "{e}");
    assert!(serde_json::from_str::<KtoConfig>(r#"{"desirable_wieght": 1}"#).is_err());
    Ok(())
}
