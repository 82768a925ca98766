//! What the loop does for every stage, so that no stage can forget it: the backward adds the
//! gradients of activation-checkpointed layers, and training forwards are keyed for adapter
//! dropout. The stage here is written as a newcomer would write one: a loss and nothing else.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Tensor, Var};
use lm::{CausalLm, InputBatch, LoadOptions};
use train::{Params, Result, Stage, StepOutput, TrainerConfig};

/// Next-token NLL of fixed rows on a causal LM; no `backward`, no position hook.
struct Bare {
    model: CausalLm,
    rows: Vec<Vec<u32>>,
}

impl Stage for Bare {
    type Batch = InputBatch;
    fn num_examples(&self) -> usize {
        self.rows.len()
    }
    fn make_batch(&mut self, indices: &[usize]) -> Result<InputBatch> {
        let rows: Vec<Vec<u32>> = indices.iter().map(|&i| self.rows[i].clone()).collect();
        Ok(InputBatch::padded(&rows, 0, false))
    }
    fn loss(&mut self, batch: &InputBatch) -> Result<StepOutput> {
        let (b, t) = (batch.b, batch.t);
        let ids = Tensor::from_slice(&batch.ids, (b, t), self.model.device())?;
        let logits = self.model.forward(batch)?; // (B, T, V)
        let v = logits.dim(2)?;
        let inputs = logits.narrow(1, 0, t - 1)?.reshape((b * (t - 1), v))?;
        let targets = ids.narrow(1, 1, t - 1)?.flatten_all()?;
        let loss = candle_nn::loss::cross_entropy(&inputs, &targets)?;
        Ok(StepOutput {
            loss,
            tokens: b * t,
            metrics: BTreeMap::new(),
        })
    }
}

fn fixture() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-llama");
    dir.display().to_string()
}

/// Trains two steps from the same start and returns every parameter before and after.
fn train_bare(out: &Path, checkpointing: bool, lora_dropout: Option<f64>) -> Result<Trained> {
    let opts = LoadOptions {
        trainable: lora_dropout.is_none(),
        ..Default::default()
    };
    let pre = lm::load(&fixture(), &opts)?;
    let mut model = pre.model;
    let lora = lora_dropout.map(|p| lm::lora::LoraSpec {
        r: 4,
        alpha: 8.0,
        dropout: p,
        targets: vec!["all-linear".into()],
        rslora: false,
    });
    let vars = model.trainable_vars(lora.as_ref(), pre.params, 3)?;
    model.checkpointing = checkpointing;
    let before = snapshot(&vars)?;
    let params = Params::new(vars.clone())?;
    let rows = (0..4u32)
        .map(|r| (0..12).map(|i| (r * 31 + i * 7) % 200 + 3).collect())
        .collect();
    let mut stage = Bare { model, rows };
    let cfg = TrainerConfig {
        learning_rate: 1e-2,
        batch_size: 2,
        max_steps: Some(2),
        max_grad_norm: None,
        save_every: Some(0),
        out: out.to_path_buf(),
        quiet: true,
        ..Default::default()
    };
    train::run(&mut stage, &params, &cfg)?;
    Ok(Trained {
        before,
        after: snapshot(&vars)?,
    })
}

struct Trained {
    before: Vec<(String, Vec<f32>)>,
    after: Vec<(String, Vec<f32>)>,
}

fn snapshot(vars: &[(String, Var)]) -> Result<Vec<(String, Vec<f32>)>> {
    vars.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().flatten_all()?.to_vec1::<f32>()?)))
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// With checkpointing on, every parameter of every decoder layer is trained, and exactly as
/// without checkpointing: the loop's backward is the checkpoint-aware one.
#[test]
fn a_stage_without_backward_code_trains_every_checkpointed_layer() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| train::Error::stage(e.to_string()))?;
    let ckpt = train_bare(&dir.path().join("a"), true, None)?;
    let plain = train_bare(&dir.path().join("b"), false, None)?;
    assert!(ckpt.after.iter().any(|(n, _)| n.contains("layers.1.")));
    for ((name, before), (_, after)) in ckpt.before.iter().zip(&ckpt.after) {
        assert!(max_diff(before, after) > 0.0, "{name} did not change");
    }
    for ((name, a), (_, b)) in ckpt.after.iter().zip(&plain.after) {
        assert!(max_diff(a, b) < 1e-5, "{name}: checkpointed run differs");
    }
    Ok(())
}

/// Adapter dropout in a stage that never mentions it: the loop keys the training forwards, so
/// the masks apply (the result differs from dropout 0) and the checkpointed recompute draws the
/// forward's masks (the result equals the plain run's).
#[test]
fn adapter_dropout_is_keyed_by_the_loop() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| train::Error::stage(e.to_string()))?;
    let ckpt = train_bare(&dir.path().join("a"), true, Some(0.3))?;
    let plain = train_bare(&dir.path().join("b"), false, Some(0.3))?;
    let none = train_bare(&dir.path().join("c"), true, Some(0.0))?;
    let mut differs = false;
    for (((name, a), (_, b)), (_, c)) in ckpt.after.iter().zip(&plain.after).zip(&none.after) {
        assert!(max_diff(a, b) < 1e-5, "{name}: checkpointed run differs");
        differs |= max_diff(a, c) > 1e-5;
    }
    assert!(differs, "dropout 0.3 trained as dropout 0");
    for ((name, before), (_, after)) in ckpt.before.iter().zip(&ckpt.after) {
        assert!(max_diff(before, after) > 0.0, "{name} did not change");
    }
    Ok(())
}
