//! DPO on GPT-2 and the Mixture-of-Experts fixtures: a few steps against the frozen starting
//! model change every trainable parameter; MoE runs log the router loss and expert loads.
use dpo::{train_dpo, DpoConfig};
use lm::LoadOptions;
use std::path::PathBuf;
use train::TrainerConfig;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

const PAIRS: &str = r#"{"prompt": "What is the capital of France?", "chosen": " Paris.", "rejected": " London, I think."}
{"prompt": "What is two plus two?", "chosen": " Four.", "rejected": " Five, of course."}
{"prompt": "Tell me about the fox.", "chosen": " The quick brown fox jumps over the lazy dog.", "rejected": " No."}
{"prompt": "Say hello.", "chosen": " Hello, world! How are you today?", "rejected": " Hi."}
"#;

#[test]
fn dpo_steps_change_every_parameter_of_gpt2_and_moe_models() {
    for name in [
        "tiny-gpt2",
        "tiny-mixtral",
        "tiny-qwen2-moe",
        "tiny-qwen3-moe",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("prefs.jsonl");
        std::fs::write(&data, PAIRS).unwrap();
        let cfg = DpoConfig {
            model: Some(fixture(name)),
            data: Some(data),
            beta: 0.5,
            ..Default::default()
        };
        let opts = LoadOptions {
            trainable: true,
            ..Default::default()
        };
        let pre = lm::load(&fixture(name), &opts).unwrap();
        let live = pre.params.clone();
        let before: Vec<Vec<f32>> = live
            .iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        let out = dir.path().join("run");
        let trainer = TrainerConfig {
            learning_rate: 2e-3,
            batch_size: 4,
            max_steps: Some(3),
            log_every: 1,
            save_every: None,
            out: out.clone(),
            quiet: true,
            ..Default::default()
        };
        train_dpo(pre, &LoadOptions::default(), &cfg, &trainer).unwrap();
        for ((n, v), b) in live.iter().zip(&before) {
            let a: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            assert!(&a != b, "{name}: {n} did not change");
        }
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert_eq!(
            metrics.contains("moe_tokens/0"),
            name != "tiny-gpt2",
            "{name}"
        );
        lm::load(out.to_str().unwrap(), &LoadOptions::default()).unwrap();
    }
}
