//! SFT runs on the tiny fixture: full and LoRA training, packing equivalence, exact resume.
mod common;
use candle_core::Tensor;
use common::*;
use lm::InputBatch;
use sft::{into_rows, pack, target_logprobs, train_sft, Sample, SftBatch, SftConfig, SftStage};
use std::collections::BTreeMap;
use std::path::Path;
use train::StageSettings;

fn probe() -> InputBatch {
    InputBatch::padded(&[vec![1, 88, 120, 45, 200, 17, 300, 2, 64]], 0, false)
}

fn cfg(data: &Path) -> SftConfig {
    SftConfig {
        model: Some(fixture("tiny-llama").display().to_string()),
        data: Some(data.to_path_buf()),
        eval_data: Some(data.to_path_buf()),
        ..Default::default()
    }
}

fn first_vs_last(losses: &[f64]) -> (f64, f64) {
    let n = losses.len();
    (losses[0], (losses[n - 2] + losses[n - 1]) / 2.0)
}

#[test]
fn full_finetune_loss_falls_every_param_changes_and_output_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "train.jsonl", TRAIN_ROWS);
    let out = dir.path().join("run");
    let pre = tiny("tiny-llama", true);
    let vars = pre.params.clone();
    let before: Vec<Tensor> = vars
        .iter()
        .map(|(_, v)| v.as_tensor().copy().expect("copy"))
        .collect();
    let trainer = train::TrainerConfig {
        eval_every: Some(4),
        ..trainer(&out)
    };
    let o = train_sft(pre, &cfg(&data), &trainer).expect("sft runs");
    let (first, last) = first_vs_last(&o.summary.losses);
    assert!(last < 0.8 * first, "loss {first} -> {last}");
    for ((name, v), b) in vars.iter().zip(&before) {
        assert!(
            max_abs_diff(v.as_tensor(), b) > 0.0,
            "{name} did not change"
        );
    }
    assert_eq!(o.train_data.rows, 8);
    // A transformers-style folder that reloads to the trained model, plus the run's records.
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "metrics.jsonl",
        "loss.svg",
        "sft_run.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert!(metrics.contains("eval_loss") && metrics.contains("mean_token_accuracy"));
    let opts = lm::LoadOptions::default();
    let reloaded = lm::load(&out.display().to_string(), &opts).expect("reload");
    let (a, b) = (
        o.model.forward(&probe()).expect("fwd"),
        reloaded.model.forward(&probe()).expect("fwd"),
    );
    assert!(max_abs_diff(&a, &b) < 1e-5);
}

#[test]
fn lora_trains_adapters_only_and_merges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "train.jsonl", TRAIN_ROWS);
    let out = dir.path().join("lora");
    let c = SftConfig {
        lora: lm::lora::LoraConfig {
            lora_r: Some(4),
            lora_alpha: 8.0,
            lora_targets: vec!["all-linear".into()],
            ..Default::default()
        },
        eval_data: None,
        ..cfg(&data)
    };
    let trainer = train::TrainerConfig {
        learning_rate: 1e-2,
        ..trainer(&out)
    };
    let mut o = train_sft(tiny("tiny-llama", false), &c, &trainer).expect("lora sft runs");
    let (first, last) = first_vs_last(&o.summary.losses);
    assert!(last < 0.9 * first, "loss {first} -> {last}");
    // Every adapter moved away from its seeded initial value.
    let spec = c.lora().expect("spec").expect("lora");
    let init = tiny("tiny-llama", false)
        .model
        .attach_lora(&spec, trainer.seed)
        .expect("attach");
    let trained: BTreeMap<String, Tensor> = o.model.lora_tensors().into_iter().collect();
    assert_eq!(trained.len(), init.len());
    assert_eq!(
        o.trainable_params,
        init.iter().map(|(_, v)| v.elem_count()).sum::<usize>()
    );
    for (name, v) in &init {
        assert!(
            max_abs_diff(&trained[name], v.as_tensor()) > 0.0,
            "{name} did not change"
        );
    }
    // No base weight changed: without adapters the model is the fixture again.
    let adapted = o.model.forward(&probe()).expect("fwd");
    o.model.set_adapters_enabled(false);
    let base = tiny("tiny-llama", false)
        .model
        .forward(&probe())
        .expect("fwd");
    assert_eq!(
        max_abs_diff(&o.model.forward(&probe()).expect("fwd"), &base),
        0.0
    );
    // The saved PEFT adapter reloads, and merging it gives the adapted model.
    let mut fresh = tiny("tiny-llama", false);
    fresh.model.load_adapter(&out).expect("adapter loads");
    assert!(max_abs_diff(&fresh.model.forward(&probe()).expect("fwd"), &adapted) < 1e-5);
    let merged = dir.path().join("merged");
    lm::save::save_pretrained(&fresh.model, &fresh.tokenizer, &merged).expect("merge");
    let m = lm::load(&merged.display().to_string(), &Default::default()).expect("reload");
    assert!(max_abs_diff(&m.model.forward(&probe()).expect("fwd"), &adapted) < 1e-5);
}

fn samples(tok: &lm::Tokenizer, dir: &Path) -> Vec<Sample> {
    let path = write(dir, "rows.jsonl", TRAIN_ROWS);
    let file = data::sft::read_sft(&path, false).expect("parse");
    sft::prepare(tok, &path, file, 256, false, false)
        .expect("prepare")
        .0
}

#[test]
fn packing_equals_unpacked_per_sample_logprobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pre = tiny("tiny-llama", false);
    let all = samples(&pre.tokenizer, dir.path());
    let lp = |rows: Vec<Vec<&Sample>>| -> Vec<f32> {
        let batch = SftBatch::new(&rows, 0);
        target_logprobs(&pre.model, &batch)
            .expect("fwd")
            .0
            .to_vec1()
            .expect("vec")
    };
    // Each sample alone, then all padded into one batch, then all packed into one row.
    let alone: Vec<f32> = all.iter().flat_map(|s| lp(vec![vec![s]])).collect();
    let padded = lp(all.iter().map(|s| vec![s]).collect());
    let packed = lp(vec![all.iter().collect()]);
    assert_eq!((alone.len(), packed.len()), (padded.len(), padded.len()));
    for ((a, p), q) in alone.iter().zip(&packed).zip(&padded) {
        assert!(
            (a - p).abs() < 1e-4 && (a - q).abs() < 1e-4,
            "{a} vs packed {p} / padded {q}"
        );
    }
    // Best-fit decreasing, longest first: 7 opens row 0, 5 fills it to 12; 4 opens row 1, 3
    // joins it, and 1 goes to the row with the least room that fits (row 1, 5 left).
    assert_eq!(pack(&[3, 7, 4, 5, 1], 12), vec![vec![1, 3], vec![2, 0, 4]]);
    let rows = into_rows(all, Some(256));
    assert!(
        rows.len() < 8
            && rows
                .iter()
                .all(|r| r.iter().map(|s| s.ids.len()).sum::<usize>() <= 256)
    );
}

/// Fails the `fail_at`-th micro-batch, as a killed process would stop.
struct Interrupted {
    inner: SftStage,
    calls: usize,
    fail_at: usize,
}

impl train::Stage for Interrupted {
    type Batch = SftBatch;
    fn num_examples(&self) -> usize {
        self.inner.num_examples()
    }
    fn make_batch(&mut self, indices: &[usize]) -> train::Result<SftBatch> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err(train::Error::Config("interrupted".into()));
        }
        self.inner.make_batch(indices)
    }
    fn loss(&mut self, batch: &SftBatch) -> train::Result<train::StepOutput> {
        self.inner.loss(batch)
    }
}

fn stage(dir: &Path, packing: bool) -> (SftStage, train::Params) {
    let pre = tiny("tiny-llama", true);
    let rows = into_rows(samples(&pre.tokenizer, dir), packing.then_some(40));
    let params = train::Params::new(pre.params).expect("params");
    (SftStage::new(pre.model, rows, vec![], 0, 2), params)
}

fn losses(out: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_u64()?, v.get("loss")?.as_f64()?)))
        .collect()
}

/// LoRA on every projection with dropout `p`, activations checkpointed (the recompute must
/// draw the forward's masks).
fn lora_stage(dir: &Path, p: f64) -> (SftStage, train::Params) {
    let mut pre = tiny("tiny-llama", false);
    let spec = lm::lora::LoraSpec {
        r: 4,
        alpha: 8.0,
        dropout: p,
        targets: vec!["all-linear".into()],
        rslora: false,
    };
    let vars = pre.model.attach_lora(&spec, 42).expect("attach");
    pre.model.checkpointing = true;
    let rows = into_rows(samples(&pre.tokenizer, dir), None);
    let params = train::Params::new(vars).expect("params");
    (SftStage::new(pre.model, rows, vec![], 0, 2), params)
}

/// Runs `make()`'s stage straight through and again interrupted after step 5 and resumed;
/// asserts the two loss curves are the same and returns it.
fn resumed_equals_straight(
    dir: &Path,
    make: impl Fn() -> (SftStage, train::Params),
    lr: f64,
) -> Vec<(u64, f64)> {
    let cfg = |out: &Path| train::TrainerConfig {
        batch_size: 2,
        grad_accum: 2,
        learning_rate: lr,
        ..trainer(out)
    };
    let straight = dir.join("straight");
    let (mut s, p) = make();
    train::run(&mut s, &p, &cfg(&straight)).expect("straight run");

    // Steps of 2 micro-batches, checkpoint after step 4: micro-batch 12 is in step 6.
    let broken = dir.join("broken");
    let (inner, p) = make();
    let mut s = Interrupted {
        inner,
        calls: 0,
        fail_at: 12,
    };
    assert!(train::run(&mut s, &p, &cfg(&broken)).is_err());
    let (mut s, p) = make();
    let resumed = train::TrainerConfig {
        resume: Some(broken.clone()),
        ..cfg(&broken)
    };
    let summary = train::run(&mut s, &p, &resumed).expect("resumed run");
    assert_eq!(summary.steps_this_run, 4);
    let (a, b) = (losses(&straight), losses(&broken));
    assert_eq!(a.len(), 8);
    assert_eq!(a, b, "resumed curve differs");
    a
}

#[test]
fn resume_reproduces_the_uninterrupted_loss_curve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lr = trainer(dir.path()).learning_rate;
    resumed_equals_straight(dir.path(), || stage(dir.path(), false), lr);
}

/// Adapter dropout draws its masks from (seed, step, micro-batch, module): a resumed run
/// draws the uninterrupted run's, and the curve is not the one without dropout.
#[test]
fn lora_dropout_resumes_exactly_and_changes_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |p: f64| {
        let sub = dir.path().join(format!("p{p}"));
        std::fs::create_dir_all(&sub).expect("dir");
        resumed_equals_straight(&sub, || lora_stage(dir.path(), p), 1e-2)
    };
    let (dropped, plain) = (run(0.3), run(0.0));
    // Step 1 is the same (B starts at zero, so the adapters add nothing yet); later ones not.
    assert_eq!(dropped[0], plain[0]);
    assert!(dropped[2..]
        .iter()
        .zip(&plain[2..])
        .all(|(a, b)| a.1 != b.1));
    let (first, last) = (dropped[0].1, dropped[dropped.len() - 1].1);
    assert!(last < first, "loss {first} -> {last} with dropout");
}
