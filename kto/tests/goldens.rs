//! KTO against TRL 1.16 goldens (`fixtures/goldens/kto.json`, made by
//! `scripts/make_kto_goldens.py`):
//!
//! ```text
//! trl 1.16.0: KTOTrainer(model=tiny-llama, ref_model=tiny-llama-ref, args=KTOConfig(loss_type, beta,
//!     desirable_weight, undesirable_weight, per_device_train_batch_size=len(rows), max_length=None));
//! rows = dpo.json's 4 pairs unpaired (4 chosen rows, label true; then 4 rejected rows, label false);
//! batch = trainer.data_collator([{prompt_ids, completion_ids, KL_completion_ids (+1 rotation), label}
//!     for the case's rows]);
//! loss = trainer._compute_loss(trainer.model, batch, return_outputs=False);
//! metrics = trainer._metrics['eval'][key][-1]
//! ```
//! The `_swapped` cases swap policy and reference so that the KL estimate is positive (not
//! clamped to 0); `_precomputed` feeds fixed `ref_logps` / `ref_KL_logps` (TRL's precomputed path).
use kto::{kl_sources, KtoConfig, KtoRow, KtoSet, KtoStage};
use serde_json::{json, Value};
use std::path::PathBuf;

type R = Result<(), Box<dyn std::error::Error>>;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn goldens() -> Value {
    let text = std::fs::read_to_string(fixtures().join("goldens/kto.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: got {got}, want {want}"
    );
}

fn load(name: &str) -> Result<lm::CausalLm, lm::Error> {
    let path = fixtures().join(name);
    let opts = lm::LoadOptions::default();
    Ok(lm::load(path.to_str().unwrap_or_default(), &opts)?.model)
}

/// The case's rows in its batch order, each row's KL completion the +1 rotation (checked
/// against the golden's `kl_completion_ids`).
fn set_of(g: &Value, case: &Value) -> KtoSet {
    let all = g["rows"].as_array().cloned().unwrap_or_default();
    let idx: Vec<usize> = serde_json::from_value(case["rows"].clone()).unwrap_or_default();
    let rows: Vec<KtoRow> = idx
        .iter()
        .map(|&i| KtoRow {
            line: i + 1,
            prompt: ids(&all[i]["prompt_ids"]),
            completion: ids(&all[i]["completion_ids"]),
            label: all[i]["label"].as_bool().unwrap_or_default(),
        })
        .collect();
    let uses_kl = case["loss_type"] == "kto";
    let kl_source = if uses_kl {
        kl_sources(rows.len(), rows.len())
    } else {
        vec![]
    };
    let ref_logps = case["fixed_ref"].as_object().map(|f| {
        let (m, k) = (ids_f(&f["ref_logps"]), ids_f(&f["ref_KL_logps"]));
        m.iter().zip(&k).map(|(a, b)| [*a, *b]).collect()
    });
    KtoSet {
        rows,
        kl_source,
        max_seq_len: 4096,
        ref_logps,
    }
}

fn ids_f(v: &Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn config_of(case: &Value) -> Result<KtoConfig, serde_json::Error> {
    let or = |k: &str, d: Value| match &case[k] {
        Value::Null => d,
        v => v.clone(),
    };
    serde_json::from_value(json!({
        "loss": case["loss_type"],
        "beta": case["beta"],
        "desirable_weight": or("desirable_weight", json!(1.0)),
        "undesirable_weight": or("undesirable_weight", json!(1.0)),
    }))
}

#[test]
fn kl_completions_are_trls_rotation() {
    let g = goldens();
    let cases = g["cases"].as_array().cloned().unwrap_or_default();
    assert!(cases.len() >= 8, "goldens missing");
    for case in cases.iter().filter(|c| c["loss_type"] == "kto") {
        let set = set_of(&g, case);
        let want: Vec<Vec<u32>> = case["kl_completion_ids"]
            .as_array()
            .map(|a| a.iter().map(ids).collect())
            .unwrap_or_default();
        let got: Vec<Vec<u32>> = (set.kl_source.iter())
            .map(|&s| set.rows[s].completion.clone())
            .collect();
        assert_eq!(got, want, "{}", case["name"]);
    }
}

#[test]
fn loss_and_metrics_match_trl() -> R {
    let g = goldens();
    let (policy, reference) = (load("tiny-llama")?, load("tiny-llama-ref")?);
    let cases = g["cases"].as_array().cloned().unwrap_or_default();
    assert!(cases.len() >= 8, "goldens missing");
    for case in &cases {
        let name = case["name"].as_str().unwrap_or_default();
        let swap = case["swap"].as_bool().unwrap_or(false);
        let (p, r) = if swap {
            (reference.clone(), policy.clone())
        } else {
            (policy.clone(), reference.clone())
        };
        let set = set_of(&g, case);
        let precomputed = set.ref_logps.is_some();
        let stage = KtoStage {
            model: p,
            reference: (!precomputed).then_some(r),
            train: set.clone(),
            eval: KtoSet::default(),
            cfg: config_of(case)?,
            pad_id: g["pad_token_id"].as_u64().unwrap_or_default() as u32,
            eval_batch_size: set.len(),
        };
        let idx: Vec<usize> = (0..set.len()).collect();
        let out = stage.forward(&set.batch(&idx, stage.pad_id))?;
        let loss = f64::from(out.loss.to_scalar::<f32>()?);
        close(loss, case["loss"].as_f64().unwrap_or(f64::NAN), 1e-5, name);
        let want = case["metrics"].as_object().cloned().unwrap_or_default();
        assert!(want.contains_key("kl") && want.contains_key("rewards/chosen"));
        for (k, v) in &want {
            let got = out.metrics.get(k).copied().unwrap_or(f64::NAN);
            close(
                got,
                v.as_f64().unwrap_or(f64::NAN),
                1e-5,
                &format!("{name} {k}"),
            );
        }
    }
    Ok(())
}

#[test]
fn sequence_sums_match_trl_rows() -> R {
    let g = goldens();
    let (policy, reference) = (load("tiny-llama")?, load("tiny-llama-ref")?);
    let rows = g["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 8);
    let seqs: Vec<(Vec<u32>, Vec<u32>)> = rows
        .iter()
        .map(|r| (ids(&r["prompt_ids"]), ids(&r["completion_ids"])))
        .collect();
    let refs: Vec<(&[u32], &[u32])> = seqs.iter().map(|(p, c)| (&p[..], &c[..])).collect();
    let batch = train::logps::CompletionBatch::new(&refs, 0);
    let pol = train::logps::completion_logps(&policy, &batch)?
        .0
        .to_vec1::<f32>()?;
    let rf = train::logps::completion_logps(&reference, &batch)?
        .0
        .to_vec1::<f32>()?;
    for (i, r) in rows.iter().enumerate() {
        close(
            f64::from(pol[i]),
            r["policy_logps"].as_f64().unwrap_or(f64::NAN),
            1e-5,
            "policy",
        );
        close(
            f64::from(rf[i]),
            r["ref_logps"].as_f64().unwrap_or(f64::NAN),
            1e-5,
            "ref",
        );
    }
    Ok(())
}
