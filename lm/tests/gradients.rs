//! Every parameter's gradient of the SFT loss equals transformers' (f32), with and without
//! activation checkpointing, for each dense architecture: the backward pass (candle's, as
//! patched in vendor/candle-core, plus the fused kernels' analytic gradients) checked against
//! the reference, not only against itself.
//!
//! Golden values: `scripts/make_grad_goldens.py` -> fixtures/goldens/grads.json. The core of it:
//! ```python
//! logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
//! lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
//! real = (mask[:, :-1] * mask[:, 1:]).float()
//! loss = -(lp * real).sum() / real.sum(); loss.backward()
//! # per parameter: grad norm, sum, and grad.flatten()[linspace(0, n - 1, 32)]
//! ```
use candle_core::{backprop::GradStore, Tensor, Var};
use lm::{CausalLm, InputBatch, LoadOptions};
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The mean next-token NLL over targets whose context token is real, left-padded batch.
fn sft_loss(model: &CausalLm, rows: &[Vec<u32>], pad: u32) -> Tensor {
    let batch = InputBatch::padded(rows, pad, true);
    let (b, t) = (batch.b, batch.t);
    let logits = model.forward(&batch).unwrap(); // (B, T, V)
    let ids = Tensor::from_vec(batch.ids.clone(), (b, t), logits.device()).unwrap();
    let lp = lm::logprobs::token_logprobs(
        &logits.narrow(1, 0, t - 1).unwrap(),
        &ids.narrow(1, 1, t - 1).unwrap(),
    )
    .unwrap(); // (B, T-1)
    let real: Vec<f32> = (0..b)
        .flat_map(|i| {
            let s = &batch.segments[i * t..(i + 1) * t];
            (0..t - 1).map(move |j| (s[j] * s[j + 1]) as f32)
        })
        .collect();
    let n: f32 = real.iter().sum();
    let real = Tensor::from_vec(real, (b, t - 1), logits.device()).unwrap();
    ((lp * real).unwrap().sum_all().unwrap() * (-1.0 / n as f64)).unwrap()
}

/// Our flat index of the golden's flat index `i`: GPT-2's Conv1D weights are `(in, out)` in
/// transformers and `(out, in)` here.
fn our_index(i: usize, golden_shape: &[usize], conv1d: bool) -> usize {
    if conv1d {
        let (r, c) = (i / golden_shape[1], i % golden_shape[1]);
        c * golden_shape[0] + r
    } else {
        i
    }
}

fn is_conv1d(model: &str, param: &str) -> bool {
    let convs = [
        ".attn.c_attn.",
        ".attn.c_proj.",
        ".mlp.c_fc.",
        ".mlp.c_proj.",
    ];
    model.contains("gpt2") && param.ends_with(".weight") && convs.iter().any(|c| param.contains(c))
}

fn check(name: &str, how: &str, grads: &GradStore, params: &[(String, Var)], want: &Value) {
    for (pname, g) in want["params"].as_object().unwrap() {
        let var = params
            .iter()
            .find(|(n, _)| n == pname)
            .unwrap_or_else(|| panic!("{name}: no parameter {pname}"));
        let grad = grads
            .get(var.1.as_tensor())
            .unwrap_or_else(|| panic!("{name} {how}: no gradient for {pname}"));
        let flat: Vec<f32> = grad.flatten_all().unwrap().to_vec1().unwrap();
        let norm = flat.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let want_norm = g["norm"].as_f64().unwrap();
        assert!(
            (norm - want_norm).abs() <= 1e-4 * want_norm + 1e-7,
            "{name} {how}: {pname} gradient norm {norm} vs {want_norm}"
        );
        let shape: Vec<usize> = serde_json::from_value(g["shape"].clone()).unwrap();
        let idx: Vec<usize> = serde_json::from_value(g["index"].clone()).unwrap();
        let vals: Vec<f64> = serde_json::from_value(g["value"].clone()).unwrap();
        for (i, v) in idx.iter().zip(&vals) {
            let got = flat[our_index(*i, &shape, is_conv1d(name, pname))] as f64;
            assert!(
                (got - v).abs() <= 1e-5 * want_norm + 1e-7,
                "{name} {how}: {pname}[{i}] = {got}, transformers {v}"
            );
        }
    }
}

#[test]
fn gradients_match_transformers_plain_and_checkpointed() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("goldens/grads.json")).unwrap(),
    )
    .unwrap();
    let rows: Vec<Vec<u32>> = serde_json::from_value(golden["rows"].clone()).unwrap();
    for (name, want) in golden["models"].as_object().unwrap() {
        let opts = LoadOptions {
            trainable: true,
            ..Default::default()
        };
        let path = fixtures().join(name);
        let mut p = lm::load(path.to_str().unwrap(), &opts).unwrap();
        let pad = p.tokenizer.pad_id;
        for checkpointing in [false, true] {
            p.model.checkpointing = checkpointing;
            let loss = sft_loss(&p.model, &rows, pad);
            let l = loss.to_scalar::<f32>().unwrap() as f64;
            let wl = want["loss"].as_f64().unwrap();
            assert!((l - wl).abs() < 1e-5, "{name}: loss {l} vs {wl}");
            let grads = lm::checkpoint::backward(&loss).unwrap();
            let how = if checkpointing {
                "checkpointed"
            } else {
                "plain"
            };
            check(name, how, &grads, &p.params, want);
        }
    }
}
