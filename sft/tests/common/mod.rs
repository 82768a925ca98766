#![allow(dead_code)]
use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

pub fn tiny(name: &str, trainable: bool) -> lm::Pretrained {
    let opts = lm::LoadOptions {
        trainable,
        ..Default::default()
    };
    lm::load(&fixture(name).display().to_string(), &opts).expect("fixture model loads")
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// Eight short rows in the four formats (two of each).
pub const TRAIN_ROWS: &str = r#"{"prompt": "The cat", "completion": " sat on the mat."}
{"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello, friend."}]}
{"instruction": "Count to three", "input": "", "output": "one two three"}
{"text": "A short line of text."}
{"prompt": [{"role": "user", "content": "Say yes"}], "completion": [{"role": "assistant", "content": "yes"}]}
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Grass?"}, {"role": "assistant", "content": "Green."}]}
{"instruction": "Add", "input": "2 and 2", "output": "4"}
{"text": "Another line, a bit longer than the first one."}
"#;

pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

pub fn trainer(out: &Path) -> train::TrainerConfig {
    train::TrainerConfig {
        learning_rate: 3e-3,
        batch_size: 4,
        max_steps: Some(8),
        warmup_steps: 1,
        log_every: 1,
        save_every: Some(4),
        seed: 7,
        out: out.to_path_buf(),
        quiet: true,
        ..Default::default()
    }
}
