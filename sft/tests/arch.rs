//! SFT on GPT-2 and the Mixture-of-Experts fixtures: a few full fine-tuning steps change every
//! trainable parameter (routers and every expert included), MoE runs add the router
//! load-balancing loss and log per-expert token counts, and the output reloads.
mod common;
use candle_core::Tensor;
use common::*;
use sft::{train_sft, SftConfig};

#[test]
fn sft_steps_change_every_parameter_of_gpt2_and_moe_models() {
    for name in [
        "tiny-gpt2",
        "tiny-mixtral",
        "tiny-qwen2-moe",
        "tiny-qwen3-moe",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = write(dir.path(), "train.jsonl", TRAIN_ROWS);
        let out = dir.path().join("run");
        let pre = tiny(name, true);
        let vars = pre.params.clone();
        let before: Vec<Tensor> = vars
            .iter()
            .map(|(_, v)| v.as_tensor().copy().expect("copy"))
            .collect();
        let cfg = SftConfig {
            model: Some(fixture(name).display().to_string()),
            data: Some(data),
            ..Default::default()
        };
        let trainer = train::TrainerConfig {
            max_steps: Some(4),
            save_every: None,
            ..trainer(&out)
        };
        let o = train_sft(pre, &cfg, &trainer).expect("sft runs");
        for ((n, v), b) in vars.iter().zip(&before) {
            assert!(
                max_abs_diff(v.as_tensor(), b) > 0.0,
                "{name}: {n} did not change"
            );
        }
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
        let moe = name != "tiny-gpt2";
        assert_eq!(metrics.contains("moe_aux_loss"), moe, "{name}");
        assert_eq!(metrics.contains("moe_tokens/3"), moe, "{name}");
        let back =
            lm::load(&out.display().to_string(), &lm::LoadOptions::default()).expect("reload");
        let probe = lm::InputBatch::padded(&[vec![1, 88, 120, 45, 200]], 0, false);
        let (a, b) = (
            o.model.forward(&probe).expect("fwd"),
            back.model.forward(&probe).expect("fwd"),
        );
        assert!(max_abs_diff(&a, &b) < 1e-5, "{name}");
    }
}
