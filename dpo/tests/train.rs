//! `train_dpo` end to end on the tiny fixtures: full fine-tuning against a different frozen
//! reference, LoRA against its own base, `--precompute-ref`, and a non-finite loss.
use dpo::{train_dpo, DpoConfig, LossType};
use lm::{LoadOptions, Pretrained};
use std::path::{Path, PathBuf};
use train::StageSettings;
use train::{Params, TrainerConfig};

type Res<T> = Result<T, Box<dyn std::error::Error>>;
type R = Res<()>;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Eight pairs in three formats: TRL explicit (messages and strings) and LLaMA-Factory.
fn write_pairs(dir: &Path) -> std::io::Result<PathBuf> {
    let qa = [
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
    let mut lines = vec![];
    for (p, c, r) in qa {
        let m = |role: &str, t: &str| serde_json::json!([{"role": role, "content": t}]);
        lines.push(serde_json::json!({"prompt": m("user", p), "chosen": m("assistant", c), "rejected": m("assistant", r)}));
        lines.push(serde_json::json!({"conversations": [{"from": "human", "value": format!("{p} Briefly.")}],
            "chosen": {"from": "gpt", "value": c}, "rejected": {"from": "gpt", "value": r}}));
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let path = dir.join("prefs.jsonl");
    std::fs::write(&path, text)?;
    Ok(path)
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
    lm::load(
        spec,
        &LoadOptions {
            trainable,
            ..Default::default()
        },
    )
}

fn snapshot(params: &Params) -> Res<Vec<(String, Vec<f32>)>> {
    let mut out = vec![];
    for (n, v) in params.iter() {
        out.push((
            n.to_string(),
            v.as_tensor().flatten_all()?.to_vec1::<f32>()?,
        ));
    }
    Ok(out)
}

#[test]
fn full_finetuning_raises_accuracy_lowers_loss_and_moves_every_weight() -> R {
    let dir = tempfile::tempdir()?;
    let data = write_pairs(dir.path())?;
    let cfg = DpoConfig {
        model: Some(fixture("tiny-llama")),
        ref_model: Some(fixture("tiny-llama-ref")),
        data: Some(data.clone()),
        eval_data: Some(data),
        beta: 0.5,
        ..Default::default()
    };
    let pre = load(&fixture("tiny-llama"), true)?;
    let before = snapshot(&Params::new(pre.params.clone())?)?;
    let live: Vec<_> = pre.params.clone();
    let out = dir.path().join("run");
    let o = train_dpo(pre, &LoadOptions::default(), &cfg, &trainer(&out, 8))?;
    let losses = &o.summary.losses;
    assert!(
        losses[losses.len() - 1] < 0.5 * losses[0],
        "loss must fall: {losses:?}"
    );
    let (acc0, acc1) = (
        o.eval_before["rewards/accuracies"],
        o.eval_after["rewards/accuracies"],
    );
    assert!(acc0 < 1.0 && acc1 == 1.0, "accuracy {acc0} -> {acc1}");
    assert!(o.eval_after["rewards/margins"] > o.eval_before["rewards/margins"]);
    let after = snapshot(&Params::new(live)?)?;
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        assert!(a != b, "{name} did not change");
    }
    // The outputs: a transformers folder that loads back, the metrics with TRL's names, the plot.
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
    assert!(out.join("dpo.svg").is_file() && out.join("dpo_run.json").is_file());
    Ok(())
}

#[test]
fn lora_uses_its_base_as_reference_and_precompute_gives_the_same_run() -> R {
    let dir = tempfile::tempdir()?;
    let data = write_pairs(dir.path())?;
    let base = DpoConfig {
        model: Some(fixture("tiny-llama")),
        data: Some(data),
        lora: lm::lora::LoraConfig {
            lora_r: Some(4),
            lora_targets: vec!["all-linear".into()],
            ..Default::default()
        },
        rpo_alpha: 0.1,
        ..Default::default()
    };
    let run_with = |precompute: bool, dropout: f64, name: &str| -> Res<dpo::DpoOutcome> {
        let mut cfg = DpoConfig {
            precompute_ref: precompute,
            ..base.clone()
        };
        cfg.lora.lora_dropout = dropout;
        let out = dir.path().join(name);
        Ok(train_dpo(
            load(&fixture("tiny-llama"), false)?,
            &LoadOptions::default(),
            &cfg,
            &trainer(&out, 4),
        )?)
    };
    let run = |precompute: bool, name: &str| run_with(precompute, 0.0, name);
    let live = run(false, "live")?;
    // Step 1: policy = base (B = 0), so the DPO part is exactly ln 2 and only the NLL remains.
    let m1 = std::fs::read_to_string(dir.path().join("live/metrics.jsonl"))?;
    let first: serde_json::Value = serde_json::from_str(m1.lines().next().unwrap_or("{}"))?;
    let nll = first["nll"].as_f64().unwrap_or(f64::NAN);
    assert!((live.summary.losses[0] - (2f64.ln() + 0.1 * nll)).abs() < 1e-4);
    assert!(live.summary.losses[3] < live.summary.losses[0]);
    let pre = run(true, "pre")?;
    for (a, b) in live.summary.losses.iter().zip(&pre.summary.losses) {
        assert!((a - b).abs() < 1e-4, "live {a} vs precomputed {b}");
    }
    // lora_dropout on the policy's adapters: step 1 is unchanged (B = 0), later steps are not,
    // and a second run draws the same masks.
    let dropped = run_with(false, 0.3, "dropout")?.summary.losses;
    assert_eq!(dropped[0], live.summary.losses[0]);
    assert!(dropped[1..]
        .iter()
        .zip(&live.summary.losses[1..])
        .all(|(a, b)| a != b));
    assert_eq!(
        dropped,
        run_with(false, 0.3, "dropout-again")?.summary.losses
    );
    assert!(dir.path().join("pre/ref_logps.json").is_file());
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
fn simpo_needs_no_reference_and_a_nan_loss_names_the_step() -> R {
    let dir = tempfile::tempdir()?;
    let data = write_pairs(dir.path())?;
    let cfg = DpoConfig {
        model: Some(fixture("tiny-llama")),
        ref_model: Some("/nonexistent/reference".into()),
        data: Some(data),
        loss: vec![LossType::Simpo],
        beta: 2.0,
        ..Default::default()
    };
    let out = dir.path().join("simpo");
    let o = train_dpo(
        load(&fixture("tiny-llama"), true)?,
        &LoadOptions::default(),
        &cfg,
        &trainer(&out, 3),
    )?;
    assert!(o.summary.losses[2] < o.summary.losses[0]);
    // A poisoned weight makes the loss NaN: the loop stops and names step and micro-batch.
    let pre = load(&fixture("tiny-llama"), true)?;
    let (_, w) = &pre.params[0];
    w.set(&(w.as_tensor() * f64::NAN)?)?;
    let cfg = DpoConfig {
        loss: vec![LossType::Sigmoid],
        ref_model: Some(fixture("tiny-llama-ref")),
        ..cfg
    };
    let err = train_dpo(
        pre,
        &LoadOptions::default(),
        &cfg,
        &trainer(&dir.path().join("nan"), 3),
    );
    let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("non-finite loss") && msg.contains("step 1, micro-batch 0"),
        "{msg}"
    );
    Ok(())
}

/// Full fine-tuning with `cfg` for 8 steps: the losses, eval before/after and whether every
/// weight moved.
fn train_full(cfg: &DpoConfig, out: &Path) -> Res<(dpo::DpoOutcome, Vec<String>)> {
    let pre = load(&fixture("tiny-llama"), true)?;
    let before = snapshot(&Params::new(pre.params.clone())?)?;
    let live: Vec<_> = pre.params.clone();
    let o = train_dpo(pre, &LoadOptions::default(), cfg, &trainer(out, 8))?;
    let after = snapshot(&Params::new(live)?)?;
    let still: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|((_, a), (_, b))| a == b)
        .map(|((n, _), _)| n.clone())
        .collect();
    Ok((o, still))
}

/// A new TRL loss alone (bco_pair, apo_zero) and TRL's MPO recipe (`--loss
/// sigmoid,bco_pair,sft --loss-weights 0.8,0.2,1.0`) lower their loss, raise the eval reward
/// margin and move every weight.
#[test]
fn new_losses_and_mpo_raise_the_margin_and_move_every_weight() -> R {
    let dir = tempfile::tempdir()?;
    let data = write_pairs(dir.path())?;
    let base = DpoConfig {
        model: Some(fixture("tiny-llama")),
        ref_model: Some(fixture("tiny-llama-ref")),
        data: Some(data.clone()),
        eval_data: Some(data),
        beta: 0.5,
        ..Default::default()
    };
    let runs = [
        ("bco_pair", vec![LossType::BcoPair], vec![]),
        ("apo_zero", vec![LossType::ApoZero], vec![]),
        (
            "mpo",
            vec![LossType::Sigmoid, LossType::BcoPair, LossType::Sft],
            vec![0.8, 0.2, 1.0],
        ),
    ];
    for (name, loss, loss_weights) in runs {
        let cfg = DpoConfig {
            loss,
            loss_weights,
            ..base.clone()
        };
        let (o, still) = train_full(&cfg, &dir.path().join(name))?;
        let l = &o.summary.losses;
        assert!(l[l.len() - 1] < l[0], "{name}: loss must fall: {l:?}");
        let (m0, m1) = (
            o.eval_before["rewards/margins"],
            o.eval_after["rewards/margins"],
        );
        assert!(m1 > m0, "{name}: margin {m0} -> {m1}");
        assert!(still.is_empty(), "{name}: {still:?} did not change");
        if name == "mpo" {
            // The sft term: the chosen NLL is logged and falls.
            assert!(o.eval_after["nll"] < o.eval_before["nll"], "{name}: nll");
        }
    }
    Ok(())
}

/// `--loss sft` alone reads no reference (none is loaded: the path does not exist) and lowers
/// the chosen NLL; its rewards are the length-normalised policy log-probs, as SimPO's.
#[test]
fn sft_alone_needs_no_reference_and_lowers_the_nll() -> R {
    let dir = tempfile::tempdir()?;
    let data = write_pairs(dir.path())?;
    let cfg = DpoConfig {
        model: Some(fixture("tiny-llama")),
        ref_model: Some("/nonexistent/reference".into()),
        data: Some(data.clone()),
        eval_data: Some(data),
        loss: vec![LossType::Sft],
        ..Default::default()
    };
    let (o, still) = train_full(&cfg, &dir.path().join("sft"))?;
    assert!(still.is_empty(), "{still:?} did not change");
    let (n0, n1) = (o.eval_before["nll"], o.eval_after["nll"]);
    assert!(n1 < n0, "nll {n0} -> {n1}");
    assert!((o.eval_after["loss"] - n1).abs() < 1e-6);
    assert!(!o.eval_after.contains_key("kl"));
    Ok(())
}
