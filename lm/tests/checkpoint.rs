//! Activation checkpointing changes memory, not numbers: the loss and every parameter's
//! gradient equal those of the plain forward, for full fine-tuning and LoRA, across the
//! architectures (GQA Llama, Qwen2 biases, Qwen3 q/k norms, GPT-2's LayerNorm and positions).
use candle_core::{backprop::GradStore, Tensor, Var};
use lm::lora::LoraSpec;
use lm::{CausalLm, InputBatch, LoadOptions};
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name);
    p.to_str().expect("utf-8 path").to_string()
}

/// A loss that reaches every position and logit: log-softmax mean plus a logit penalty.
fn loss(model: &CausalLm, pad: u32) -> Tensor {
    let rows = vec![vec![5u32, 9, 17, 33, 2, 8], vec![40u32, 41, 42]];
    let batch = InputBatch::padded(&rows, pad, true);
    let logits = model.forward(&batch).unwrap();
    let l = lm::ops::log_softmax_last(&logits)
        .unwrap()
        .mean_all()
        .unwrap();
    (l + logits.sqr().unwrap().mean_all().unwrap()).unwrap()
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    let s = b
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    d.to_scalar::<f32>().unwrap() / s.max(1e-12)
}

/// Loss and gradients with and without checkpointing on the same model and vars.
fn compare(name: &str, model: &mut CausalLm, vars: &[(String, Var)], pad: u32) {
    model.checkpointing = false;
    let plain = loss(model, pad);
    let want: GradStore = plain.backward().unwrap();
    model.checkpointing = true;
    let ck = loss(model, pad);
    // The layers really were checkpointed: a plain backward does not reach their parameters.
    let raw = ck.backward().unwrap();
    let missing = vars
        .iter()
        .filter(|(_, v)| raw.get(v.as_tensor()).is_none())
        .count();
    assert!(missing > 0, "{name}: nothing was checkpointed");
    let got = lm::checkpoint::backward(&ck).unwrap();
    let dl = (plain - ck)
        .unwrap()
        .abs()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(dl < 1e-6, "{name}: loss differs by {dl}");
    for (n, v) in vars {
        let w = want
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{name}: {n} plain grad"));
        let g = got
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{name}: {n} no grad"));
        let d = max_rel_diff(g, w);
        assert!(d < 1e-4, "{name}: {n} gradient differs by {d} (relative)");
    }
}

#[test]
fn checkpointed_gradients_equal_plain_ones_full_fine_tuning() {
    for name in ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gpt2"] {
        let opts = LoadOptions {
            trainable: true,
            ..Default::default()
        };
        let mut p = lm::load(&fixture(name), &opts).unwrap();
        assert!(!p.params.is_empty());
        compare(name, &mut p.model, &p.params, p.tokenizer.pad_id);
    }
}

#[test]
fn checkpointed_gradients_equal_plain_ones_with_lora() {
    let mut p = lm::load(&fixture("tiny-llama"), &LoadOptions::default()).unwrap();
    let spec = LoraSpec {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
        rslora: false,
    };
    let vars = p.model.attach_lora(&spec, 3).unwrap();
    // PEFT starts B at zero, which would leave A without gradient: move B off zero.
    for (_, v) in &vars {
        let t = v.as_tensor();
        v.set(&(t + Tensor::randn(0f32, 0.1, t.shape(), t.device()).unwrap()).unwrap())
            .unwrap();
    }
    compare("tiny-llama lora", &mut p.model, &vars, p.tokenizer.pad_id);
}
