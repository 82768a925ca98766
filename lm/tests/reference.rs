//! Rudder's decoder against transformers on tiny random models (fixtures made by
//! `scripts/make_fixtures.py`: `model(input_ids, attention_mask, position_ids).logits` in f32
//! with eager attention; see fixtures/README.md).
use candle_core::{Device, Tensor};
use lm::{InputBatch, LoadOptions};
use std::collections::HashMap;
use std::path::PathBuf;

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("reference.safetensors"), &Device::Cpu)
        .unwrap()
}

fn rows_u32(t: &Tensor) -> Vec<Vec<u32>> {
    t.to_dtype(candle_core::DType::I64)
        .unwrap()
        .to_vec2::<i64>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|x| x as u32).collect())
        .collect()
}

/// Σ |t| over every element.
fn abs_sum(t: &Tensor) -> f32 {
    t.abs().unwrap().sum_all().unwrap().to_scalar().unwrap()
}

/// max |a - b| over every element.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Largest |a - b| over positions where `mask` (B, T) is 1; a, b are (B, T, V).
fn max_diff_masked(a: &Tensor, b: &Tensor, mask: &[Vec<u32>]) -> f32 {
    let (a, b) = (a.to_vec3::<f32>().unwrap(), b.to_vec3::<f32>().unwrap());
    let mut worst = 0f32;
    for (i, row) in mask.iter().enumerate() {
        for (j, &m) in row.iter().enumerate() {
            if m == 1 {
                for (x, y) in a[i][j].iter().zip(&b[i][j]) {
                    worst = worst.max((x - y).abs());
                }
            }
        }
    }
    worst
}

fn check_model(name: &str) {
    let p = lm::load(fixture(name).to_str().unwrap(), &LoadOptions::default()).unwrap();
    let r = reference(name);
    for i in 0..3 {
        let ids = rows_u32(&r[&format!("ids_single_{i}")]);
        let logits = p
            .model
            .forward(&InputBatch::padded(&ids, 0, false))
            .unwrap();
        let want = &r[&format!("logits_single_{i}")];
        let ones = vec![vec![1u32; ids[0].len()]];
        let d = max_diff_masked(&logits, want, &ones);
        assert!(d < TOL, "{name} single {i}: max diff {d}");
    }
    for side in ["right", "left"] {
        let ids = rows_u32(&r[&format!("ids_{side}")]);
        let mask = rows_u32(&r[&format!("mask_{side}")]);
        let (b, t) = (ids.len(), ids[0].len());
        let batch = InputBatch::from_mask(ids.concat(), &mask.concat(), b, t);
        let logits = p.model.forward(&batch).unwrap();
        let d = max_diff_masked(&logits, &r[&format!("logits_{side}")], &mask);
        assert!(d < TOL, "{name} {side}-padded: max diff {d}");
    }
}

#[test]
fn llama_logits_match_transformers() {
    check_model("tiny-llama");
}

#[test]
fn qwen2_logits_match_transformers() {
    check_model("tiny-qwen2");
}

#[test]
fn qwen3_logits_match_transformers() {
    check_model("tiny-qwen3");
}

#[test]
fn mistral_logits_match_transformers() {
    check_model("tiny-mistral");
}

#[test]
fn padded_rows_equal_rows_alone() {
    // Right and left padding through Rudder's own InputBatch::padded, no fixture batch needed.
    let p = lm::load(
        fixture("tiny-llama").to_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let rows = vec![vec![5u32, 9, 17, 33, 2], vec![40u32, 41, 42], vec![7u32; 8]];
    for left in [false, true] {
        let batch = InputBatch::padded(&rows, p.tokenizer.pad_id, left);
        let logits = p.model.forward(&batch).unwrap();
        for (i, r) in rows.iter().enumerate() {
            let alone = p
                .model
                .forward(&InputBatch::padded(std::slice::from_ref(r), 0, false))
                .unwrap();
            let start = if left { batch.t - r.len() } else { 0 };
            let got = logits.get(i).unwrap().narrow(0, start, r.len()).unwrap();
            let d = max_abs_diff(&got, &alone.get(0).unwrap());
            assert!(d < 1e-5, "row {i} left={left}: {d}");
        }
    }
}

#[test]
fn next_token_logprobs_match_transformers() {
    let p = lm::load(
        fixture("tiny-llama").to_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let r = reference("tiny-llama");
    let ids = rows_u32(&r["ids_right"]);
    let mask = rows_u32(&r["mask_right"]);
    let (b, t) = (ids.len(), ids[0].len());
    let batch = InputBatch::from_mask(ids.concat(), &mask.concat(), b, t);
    let logits = p
        .model
        .forward(&batch)
        .unwrap()
        .narrow(1, 0, t - 1)
        .unwrap();
    let targets = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .narrow(1, 1, t - 1)
        .unwrap();
    let lp = lm::logprobs::token_logprobs(&logits, &targets)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let want = r["logprobs_right"].to_vec2::<f32>().unwrap();
    for i in 0..b {
        for j in 0..t - 1 {
            if mask[i][j + 1] == 1 {
                assert!(
                    (lp[i][j] - want[i][j]).abs() < TOL,
                    "({i},{j}) {} vs {}",
                    lp[i][j],
                    want[i][j]
                );
            }
        }
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    for name in ["tiny-llama", "tiny-qwen2", "tiny-qwen3"] {
        let mut p = lm::load(fixture(name).to_str().unwrap(), &LoadOptions::default()).unwrap();
        let r = reference(name);
        let prompt = rows_u32(&r["greedy_prompt"]).remove(0);
        let want = rows_u32(&r["greedy_out"]).remove(0);
        // The fixture was generated without EOS stopping.
        p.tokenizer.eos_ids.clear();
        let cfg = lm::generate::SamplingConfig {
            max_new_tokens: want.len() - prompt.len(),
            ..Default::default()
        };
        let g = lm::generate::generate(&p.model, &p.tokenizer, std::slice::from_ref(&prompt), &cfg)
            .unwrap();
        assert_eq!(g[0].tokens, want[prompt.len()..], "{name}");
    }
}

#[test]
fn every_parameter_gets_a_gradient() {
    for name in ["tiny-llama", "tiny-qwen2", "tiny-qwen3"] {
        let opts = LoadOptions {
            trainable: true,
            ..Default::default()
        };
        let p = lm::load(fixture(name).to_str().unwrap(), &opts).unwrap();
        let rows = vec![vec![5u32, 9, 17, 33, 2, 8], vec![40u32, 41, 42]];
        let batch = InputBatch::padded(&rows, p.tokenizer.pad_id, false);
        let logits = p.model.forward(&batch).unwrap();
        let loss = lm::ops::log_softmax_last(&logits)
            .unwrap()
            .mean_all()
            .unwrap();
        let loss = (loss + logits.sqr().unwrap().mean_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        assert!(!p.params.is_empty());
        for (n, v) in &p.params {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient for {n}"));
            let s = abs_sum(g);
            assert!(
                s > 0.0 && s.is_finite(),
                "{name}: zero or non-finite gradient for {n}: {s}"
            );
        }
    }
}

#[test]
fn save_and_reload_is_bit_exact() {
    let p = lm::load(
        fixture("tiny-qwen2").to_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    lm::save::save_pretrained(&p.model, &p.tokenizer, dir.path()).unwrap();
    let q = lm::load(dir.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let a = p.model.named_tensors().unwrap();
    let b: HashMap<String, Tensor> = q.model.named_tensors().unwrap().into_iter().collect();
    assert_eq!(a.len(), b.len());
    for (n, t) in a {
        let d = max_abs_diff(&t, &b[&n]);
        assert_eq!(d, 0.0, "{n}");
    }
    assert_eq!(q.tokenizer.chat_template, p.tokenizer.chat_template);
    assert_eq!(
        q.tokenizer.encode("hello world", true).unwrap(),
        p.tokenizer.encode("hello world", true).unwrap()
    );
}

/// Real checkpoints ship as bf16, often sharded (`model.safetensors.index.json`): the shards load
/// as one model, each weight widened to f32 exactly, so the logits equal those of the same
/// weights rounded to bf16 and stored as one f32 file. (Checked against transformers by hand on
/// SmolLM2-135M saved with `save_pretrained(max_shard_size="100MB")` in bf16: completion
/// log-prob sums -21.50345 / -13.62677 against transformers' -21.50410 / -13.62763 in f32.)
#[test]
fn sharded_bf16_folder_loads_as_its_rounded_weights() {
    use candle_core::DType;
    let src = fixture("tiny-llama");
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let bf16: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.to_dtype(DType::BF16).unwrap()))
        .collect();
    let (sharded, rounded) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [&sharded, &rounded] {
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(src.join(f), d.path().join(f)).unwrap();
        }
    }
    // Two shards, the tensors split by name, and the index transformers writes.
    let mut names: Vec<&String> = bf16.keys().collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let shard: HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), bf16[*n].clone()))
            .collect();
        candle_core::safetensors::save(&shard, sharded.path().join(&file)).unwrap();
        part.iter().for_each(|n| {
            weight_map.insert((*n).clone(), file.clone().into());
        });
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        sharded.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let widened: HashMap<String, Tensor> = bf16
        .iter()
        .map(|(n, t)| (n.clone(), t.to_dtype(DType::F32).unwrap()))
        .collect();
    candle_core::safetensors::save(&widened, rounded.path().join("model.safetensors")).unwrap();

    let load = |d: &tempfile::TempDir| {
        lm::load(d.path().to_str().unwrap(), &LoadOptions::default()).unwrap()
    };
    let (a, b) = (load(&sharded), load(&rounded));
    let batch = InputBatch::padded(&[vec![5, 9, 2, 77, 31, 8]], 0, false);
    let (la, lb) = (
        a.model.forward(&batch).unwrap(),
        b.model.forward(&batch).unwrap(),
    );
    let d = max_diff_masked(&la, &lb, &[vec![1; 6]]);
    assert_eq!(d, 0.0, "sharded bf16 vs rounded f32: max diff {d}");
    // The rounding is real: the f32 fixture's logits differ from the bf16 model's.
    let f32_logits = lm::load(src.to_str().unwrap(), &LoadOptions::default())
        .unwrap()
        .model
        .forward(&batch)
        .unwrap();
    assert!(max_diff_masked(&la, &f32_logits, &[vec![1; 6]]) > 1e-4);
}

/// YaRN end to end (inverse frequencies and the attention factor on cos/sin): the tiny-qwen2
/// fixture with yarn rope parameters, against transformers 5.24 (eager, f32):
/// ```python
/// c["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0,
///                         "original_max_position_embeddings": 32, "rope_theta": 1e6}
/// m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
/// out = m(torch.tensor([[5, 9, 2, 77, 31, 8, 100, 200, 17, 3]])).logits
/// out[0, -1, :6]      # [-4.406957, -2.32752, -2.865339, 0.572392, 0.101663, -1.277583]
/// out.abs().sum()     # 7284.4
/// ```
#[test]
fn yarn_logits_match_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("tiny-qwen2");
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["rope_parameters"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0,
        "original_max_position_embeddings": 32, "rope_theta": 1e6});
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let p = lm::load(dir.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let ids = vec![vec![5, 9, 2, 77, 31, 8, 100, 200, 17, 3]];
    let logits = p
        .model
        .forward(&InputBatch::padded(&ids, 0, false))
        .unwrap();
    let last: Vec<f32> = logits.get(0).unwrap().get(9).unwrap().to_vec1().unwrap();
    let want = [
        -4.406957, -2.32752, -2.865339, 0.572392, 0.101663, -1.277583,
    ];
    for (g, w) in last.iter().zip(want) {
        assert!((g - w).abs() < 1e-4, "{:?} vs {want:?}", &last[..6]);
    }
    let sum = abs_sum(&logits);
    assert!((sum - 7284.4).abs() < 0.05, "{sum}");
}
