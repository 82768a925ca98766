//! Forward cost of a sparse MoE decoder against its dense twin: `cargo bench -p lm --bench
//! moe_forward`. The twin is the same Mistral-style decoder with one dense MLP of the expert's
//! size; the MoE model has 4 such experts per layer and routes every token to 1 of them
//! (Mixtral block, top-1). Since only the selected expert runs for each token, the MoE forward
//! should cost about the twin's plus the router and the gather/scatter, far below the 4x that
//! running every expert would cost (shown by the same model routing to all 4, top-4).
//! Random weights (seeded), f32, no gradients.
use candle_core::Device;
use lm::{CausalLm, InputBatch, ModelConfig, Precision};
use std::path::Path;
use std::time::Instant;

/// `top_k == 0`: the dense twin; else 4 experts, `top_k` of them per token.
fn config(top_k: usize) -> ModelConfig {
    let moe = top_k > 0;
    let mut v = serde_json::json!({
        "model_type": if moe { "mixtral" } else { "mistral" },
        "vocab_size": 4096, "hidden_size": 512, "intermediate_size": 2048,
        "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 8,
        "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
    });
    if moe {
        v["num_local_experts"] = 4.into();
        v["num_experts_per_tok"] = top_k.into();
    }
    ModelConfig::from_json(v, Path::new("<bench>")).expect("config")
}

/// Median seconds of `reps` forward passes over a (B, T) batch.
fn time_forward(model: &CausalLm, b: usize, t: usize, reps: usize) -> f64 {
    let rows: Vec<Vec<u32>> = (0..b)
        .map(|i| {
            (0..t)
                .map(|j| ((i * 7919 + j * 104729) % 4000) as u32 + 10)
                .collect()
        })
        .collect();
    let batch = InputBatch::padded(&rows, 0, false);
    model.forward(&batch).expect("warm-up");
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            model.forward(&batch).expect("forward");
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[reps / 2]
}

fn main() {
    let (b, t, reps) = (4, 256, 7);
    let build = |k| {
        CausalLm::random(config(k), &Device::Cpu, Precision::default(), false, 0)
            .expect("random model")
            .0
    };
    let params = |m: &CausalLm| m.config.num_parameters() as f64 / 1e6;
    println!("forward of {b} x {t} tokens, median of {reps}:");
    let mut dense_ms = 0.0;
    for (k, label) in [
        (0, "dense twin"),
        (1, "4 experts, top-1"),
        (4, "4 experts, top-4"),
    ] {
        let m = build(k);
        let ms = time_forward(&m, b, t, reps) * 1e3;
        if k == 0 {
            dense_ms = ms;
        }
        println!(
            "  {label:<17} {:5.1}M params {ms:8.1} ms  {:.2}x dense",
            params(&m),
            ms / dense_ms
        );
    }
}
