//! The path a GPU takes (plain candle ops: no fused softmax, no frozen-weight matmul, no decoding
//! GEMV) gives the CPU kernels' numbers: logits, gradients (full and LoRA) and greedy tokens.
//! `lm::fused::plain_ops` switches the CPU-only kernels off so this runs on the CPU.
use candle_core::{Result, Tensor, Var};
use lm::fused::plain_ops;
use lm::generate::{generate, SamplingConfig};
use lm::lora::LoraSpec;
use lm::{InputBatch, LoadOptions, Pretrained};
use std::path::PathBuf;

const TOL: f32 = 1e-5;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn tiny(trainable: bool) -> Pretrained {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-llama");
    let opts = LoadOptions {
        trainable,
        ..Default::default()
    };
    lm::load(dir.to_str().unwrap(), &opts).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Logits (B, T, V) and the gradient of a log-softmax loss for every var.
fn forward_backward(p: &Pretrained, vars: &[(String, Var)]) -> Result<(Tensor, Vec<Tensor>)> {
    let rows = vec![vec![5u32, 9, 17, 33, 2, 8], vec![40u32, 41, 42]];
    let logits = p.model.forward(&InputBatch::padded(&rows, 0, false))?;
    let loss = lm::ops::log_softmax_last(&logits)?.mean_all()?;
    let grads = loss.backward()?;
    let g = vars
        .iter()
        .map(|(n, v)| grads.get(v.as_tensor()).cloned().expect(n))
        .collect();
    Ok((logits, g))
}

fn assert_same(a: &(Tensor, Vec<Tensor>), b: &(Tensor, Vec<Tensor>), what: &str) {
    let d = max_diff(&a.0, &b.0);
    assert!(d < TOL, "{what}: logits differ by {d}");
    assert_eq!(a.1.len(), b.1.len());
    for (x, y) in a.1.iter().zip(&b.1) {
        let d = max_diff(x, y);
        assert!(d < TOL, "{what}: gradients differ by {d}");
    }
}

#[test]
fn full_training_path_matches_plain_ops() -> TestResult {
    let p = tiny(true);
    let fused = forward_backward(&p, &p.params)?;
    let plain = plain_ops(|| forward_backward(&p, &p.params))?;
    assert_same(&fused, &plain, "full");
    Ok(())
}

#[test]
fn lora_training_path_matches_plain_ops() -> TestResult {
    // Frozen base weights under tracked inputs: the CPU uses the frozen-weight matmul there.
    let mut p = tiny(false);
    let spec = LoraSpec {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
        rslora: false,
    };
    let vars = p.model.attach_lora(&spec, 3)?;
    for (_, v) in &vars {
        // Non-zero B, so the adapters change the logits and feed gradients everywhere.
        v.set(&(v.as_tensor().ones_like()? * 0.05)?)?;
    }
    let fused = forward_backward(&p, &vars)?;
    let plain = plain_ops(|| forward_backward(&p, &vars))?;
    assert_same(&fused, &plain, "lora");
    Ok(())
}

#[test]
fn greedy_decoding_matches_plain_ops() -> TestResult {
    let p = tiny(false);
    let mut tok = p.tokenizer.clone();
    tok.eos_ids.clear();
    let prompts = vec![vec![5u32, 9, 17], vec![40u32, 41, 42, 43, 44]];
    let cfg = SamplingConfig {
        max_new_tokens: 12,
        ..Default::default()
    };
    let fast = generate(&p.model, &tok, &prompts, &cfg)?;
    let plain = plain_ops(|| generate(&p.model, &tok, &prompts, &cfg))?;
    for (a, b) in fast.iter().zip(&plain) {
        assert_eq!(a.tokens, b.tokens);
    }
    Ok(())
}

/// Rows that stop early leave the batch (and the KV cache); the others' tokens are those each
/// row gets alone (greedy) and that they got before the EOS id was set.
#[test]
fn finished_rows_leave_the_batch_without_changing_the_others() -> TestResult {
    let p = tiny(false);
    let mut tok = p.tokenizer.clone();
    tok.eos_ids.clear();
    let prompts = vec![
        vec![5u32, 9, 17],
        vec![40u32, 41, 42, 43, 44],
        vec![7u32, 3],
    ];
    let cfg = SamplingConfig {
        max_new_tokens: 10,
        ..Default::default()
    };
    let free = generate(&p.model, &tok, &prompts, &cfg)?;
    // Row 0's third token becomes an EOS: row 0 ends at step 3, the others run on.
    let eos = free[0].tokens[2];
    tok.eos_ids = vec![eos];
    let stopped = generate(&p.model, &tok, &prompts, &cfg)?;
    assert!(stopped[0].finished && stopped[0].tokens.len() <= 3);
    for (i, prompt) in prompts.iter().enumerate() {
        let alone = generate(&p.model, &tok, std::slice::from_ref(prompt), &cfg)?;
        assert_eq!(stopped[i].tokens, alone[0].tokens, "row {i}");
        let cut = free[i]
            .tokens
            .iter()
            .position(|&t| t == eos)
            .map_or(10, |k| k + 1);
        assert_eq!(stopped[i].tokens, free[i].tokens[..cut], "row {i}");
    }
    assert!(
        stopped.iter().any(|g| g.tokens.len() > 3),
        "some row outlives row 0"
    );
    Ok(())
}

/// Prompts sharing a prefix (a chat template's opening; RLOO/GRPO's repeated prompts) are
/// prefilled packed, the prefix once: each row's first-step logits and greedy tokens are those
/// it gets alone, which computes its whole prompt. Every family: learned positions (GPT-2), q/k
/// norms (Qwen3), routed experts (Mixtral, Qwen2-MoE).
#[test]
fn a_shared_prefix_computed_once_gives_each_row_its_own_tokens() -> TestResult {
    let archs = [
        "tiny-llama",
        "tiny-gpt2",
        "tiny-qwen3",
        "tiny-mistral",
        "tiny-mixtral",
        "tiny-qwen2-moe",
    ];
    for arch in archs {
        shared_prefix_rows_match_alone(arch).map_err(|e| format!("{arch}: {e}"))?;
    }
    Ok(())
}

fn shared_prefix_rows_match_alone(arch: &str) -> TestResult {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(arch);
    let p = lm::load(dir.to_str().unwrap(), &LoadOptions::default())?;
    let mut tok = p.tokenizer.clone();
    tok.eos_ids.clear();
    // 12 shared tokens. Packed, the rests follow the prefix in one row; with the long one it
    // is over 64 positions (the composed attention rather than the decoding kernel).
    let head: Vec<u32> = (10..22).collect();
    let long: Vec<u32> = (100..160).collect();
    let rests = [&[5u32][..], &[40, 41, 42], &[7, 3, 9, 9, 9, 9], &[5], &long];
    let prompts: Vec<Vec<u32>> = rests
        .iter()
        .map(|rest| [head.as_slice(), rest].concat())
        .collect();
    let cfg = SamplingConfig {
        max_new_tokens: 8,
        ..Default::default()
    };
    // Each row's first-step logits, and its tokens.
    type Rows = (Vec<Vec<f32>>, Vec<Vec<u32>>);
    let first_logits = |prompts: &[Vec<u32>]| -> lm::Result<Rows> {
        let mut logits = vec![vec![]; prompts.len()];
        let mut keep = |s: lm::generate::Step<'_>| {
            if s.step == 0 {
                logits[s.row] = s.logits.to_vec();
            }
        };
        let g = lm::generate::generate_observed(&p.model, &tok, prompts, &cfg, &mut keep)?;
        Ok((logits, g.into_iter().map(|g| g.tokens).collect()))
    };
    let (batch_logits, batch_tokens) = first_logits(&prompts)?;
    for (i, prompt) in prompts.iter().enumerate() {
        let (alone_logits, alone_tokens) = first_logits(std::slice::from_ref(prompt))?;
        let d = alone_logits[0]
            .iter()
            .zip(&batch_logits[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-4, "row {i}: first-step logits differ by {d}");
        assert_eq!(batch_tokens[i], alone_tokens[0], "row {i}");
    }
    assert_eq!(batch_tokens[0], batch_tokens[3], "the same prompt twice");
    Ok(())
}
