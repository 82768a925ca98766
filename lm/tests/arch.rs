//! GPT-2 and the Mixture-of-Experts decoders against transformers 5.24 on tiny random models
//! (fixtures made by `scripts/make_arch_fixtures.py`: f32, eager attention; see
//! fixtures/README.md): logits unpadded, right- and left-padded within 1e-4, greedy generation
//! token for token, a gradient for every parameter, bit-exact save/reload, and the router
//! load-balancing loss equal to `load_balancing_loss_func`.
use candle_core::{Device, Tensor};
use lm::{InputBatch, LoadOptions};
use std::collections::HashMap;
use std::path::PathBuf;

const TOL: f32 = 1e-4;
const ALL: [&str; 4] = [
    "tiny-gpt2",
    "tiny-mixtral",
    "tiny-qwen2-moe",
    "tiny-qwen3-moe",
];
const MOE: [&str; 3] = ["tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

fn load(name: &str, trainable: bool) -> lm::Pretrained {
    let opts = LoadOptions {
        trainable,
        ..Default::default()
    };
    lm::load(fixture(name).to_str().unwrap(), &opts).unwrap()
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("reference.safetensors"), &Device::Cpu)
        .unwrap()
}

fn rows_u32(t: &Tensor) -> Vec<Vec<u32>> {
    let v = t.to_dtype(candle_core::DType::I64).unwrap();
    let v = v.to_vec2::<i64>().unwrap();
    v.into_iter()
        .map(|r| r.into_iter().map(|x| x as u32).collect())
        .collect()
}

/// Largest |a - b| over positions where `mask` (B, T) is 1; a, b are (B, T, V).
fn max_diff_masked(a: &Tensor, b: &Tensor, mask: &[Vec<u32>]) -> f32 {
    let (a, b) = (a.to_vec3::<f32>().unwrap(), b.to_vec3::<f32>().unwrap());
    let mut worst = 0f32;
    for (i, row) in mask.iter().enumerate() {
        for (j, _) in row.iter().enumerate().filter(|(_, &m)| m == 1) {
            for (x, y) in a[i][j].iter().zip(&b[i][j]) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    worst
}

#[test]
fn logits_match_transformers_unpadded_and_padded() {
    for name in ALL {
        let p = load(name, false);
        let r = reference(name);
        for i in 0..3 {
            let ids = rows_u32(&r[&format!("ids_single_{i}")]);
            let logits = p
                .model
                .forward(&InputBatch::padded(&ids, 0, false))
                .unwrap();
            let ones = vec![vec![1u32; ids[0].len()]];
            let d = max_diff_masked(&logits, &r[&format!("logits_single_{i}")], &ones);
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
}

#[test]
fn greedy_generation_matches_transformers() {
    for name in ALL {
        let mut p = load(name, false);
        let r = reference(name);
        let prompt = rows_u32(&r["greedy_prompt"]).remove(0);
        let want = rows_u32(&r["greedy_out"]).remove(0);
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
    for name in ALL {
        let p = load(name, true);
        // Enough varied tokens that every expert of every layer is routed some.
        let long: Vec<u32> = (0..40u32).map(|i| (i * 37 + 11) % 384).collect();
        let rows = vec![long, vec![40u32, 41, 42]];
        let batch = InputBatch::padded(&rows, p.tokenizer.pad_id, false);
        let logits = p.model.forward(&batch).unwrap();
        let mut loss = lm::ops::log_softmax_last(&logits)
            .unwrap()
            .mean_all()
            .unwrap();
        loss = (loss + logits.sqr().unwrap().mean_all().unwrap()).unwrap();
        if let Some((aux, _)) = p.model.router_aux_loss(Some(&batch.segments)).unwrap() {
            loss = (loss + aux).unwrap();
        }
        let grads = loss.backward().unwrap();
        assert!(!p.params.is_empty());
        for (n, v) in &p.params {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient for {n}"));
            let s = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                s > 0.0 && s.is_finite(),
                "{name}: zero or non-finite gradient for {n}: {s}"
            );
        }
    }
}

/// Transformers' value: `model(ids_right, attention_mask=mask_right, output_router_logits=True)
/// .aux_loss` (and unpadded for `ids_single_2`), in scripts/make_arch_fixtures.py.
#[test]
fn load_balancing_loss_matches_transformers() {
    for name in MOE {
        let p = load(name, false);
        let r = reference(name);
        let ids = rows_u32(&r["ids_right"]);
        let mask = rows_u32(&r["mask_right"]);
        let (b, t) = (ids.len(), ids[0].len());
        let batch = InputBatch::from_mask(ids.concat(), &mask.concat(), b, t);
        p.model.forward(&batch).unwrap();
        let (aux, counts) = p
            .model
            .router_aux_loss(Some(&batch.segments))
            .unwrap()
            .unwrap();
        let want = r["aux_loss_right"].to_scalar::<f32>().unwrap();
        let got = aux.to_scalar::<f32>().unwrap();
        assert!((got - want).abs() < 1e-5, "{name}: {got} vs {want}");
        // Every real token makes top_k assignments in every sparse layer.
        let moe = p.model.config.moe.clone().unwrap();
        let sparse = (0..p.model.config.num_layers)
            .filter(|&l| moe.is_sparse(l))
            .count();
        let real: u32 = mask.concat().iter().sum();
        let total: f32 = counts.iter().sum();
        assert_eq!(total as usize, real as usize * moe.top_k * sparse, "{name}");

        let ids = rows_u32(&r["ids_single_2"]);
        p.model
            .forward(&InputBatch::padded(&ids, 0, false))
            .unwrap();
        let (aux, _) = p.model.router_aux_loss(None).unwrap().unwrap();
        let want = r["aux_loss_single_2"].to_scalar::<f32>().unwrap();
        let got = aux.to_scalar::<f32>().unwrap();
        assert!(
            (got - want).abs() < 1e-5,
            "{name} unpadded: {got} vs {want}"
        );
    }
}

#[test]
fn save_and_reload_is_bit_exact_under_transformers_names() {
    for name in ALL {
        let p = load(name, false);
        let dir = tempfile::tempdir().unwrap();
        lm::save::save_pretrained(&p.model, &p.tokenizer, dir.path()).unwrap();
        // The saved file holds exactly the tensors (names and shapes) of the fixture that
        // transformers wrote.
        let saved =
            candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu)
                .unwrap();
        let orig =
            candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu)
                .unwrap();
        let mut a: Vec<_> = saved
            .iter()
            .map(|(n, t)| (n.clone(), t.dims().to_vec()))
            .collect();
        let mut b: Vec<_> = orig
            .iter()
            .map(|(n, t)| (n.clone(), t.dims().to_vec()))
            .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}");
        for (n, t) in &orig {
            let d = (t - &saved[n]).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{name}: {n}");
        }
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
                .unwrap();
        let class = p.model.config.arch.causal_lm_class();
        assert_eq!(cfg["architectures"][0], class.as_str());
        lm::load(dir.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    }
}

/// The hub's original `gpt2` files were saved from `GPT2Model`: no `transformer.` prefix, no
/// `lm_head.weight`, and causal-mask buffers `h.{i}.attn.bias` / `attn.masked_bias`. Such a
/// folder loads to the same model.
#[test]
fn gpt2_loads_the_hub_layout_without_prefix() {
    let src = fixture("tiny-gpt2");
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut renamed: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(n, t)| (n.trim_start_matches("transformer.").to_string(), t))
        .collect();
    for l in 0..2 {
        let mask = Tensor::ones((1, 1, 128, 128), candle_core::DType::F32, &Device::Cpu).unwrap();
        renamed.insert(format!("h.{l}.attn.bias"), mask);
        renamed.insert(
            format!("h.{l}.attn.masked_bias"),
            Tensor::new(-1e4f32, &Device::Cpu).unwrap(),
        );
    }
    candle_core::safetensors::save(&renamed, dir.path().join("model.safetensors")).unwrap();
    let p = lm::load(dir.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let r = reference("tiny-gpt2");
    let ids = rows_u32(&r["ids_single_2"]);
    let logits = p
        .model
        .forward(&InputBatch::padded(&ids, 0, false))
        .unwrap();
    let ones = vec![vec![1u32; ids[0].len()]];
    let d = max_diff_masked(&logits, &r["logits_single_2"], &ones);
    assert!(d < TOL, "max diff {d}");
}

/// `--model gpt2` (the tutorials' bare id) resolves to `openai-community/gpt2` in the local
/// hf-hub cache; the cached folder here holds the tiny GPT-2 fixture.
#[test]
fn bare_gpt2_id_loads_from_the_hub_cache_offline() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--openai-community--gpt2");
    let snap = repo.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123").unwrap();
    for e in std::fs::read_dir(fixture("tiny-gpt2")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), snap.join(e.file_name())).unwrap();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "gpt2_hub_child", "--nocapture"])
        .env("RUDDER_HUB_CHILD", "1")
        .env("HF_HOME", home.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Runs in a child process (env vars are process-wide).
#[test]
fn gpt2_hub_child() {
    if std::env::var("RUDDER_HUB_CHILD").is_err() {
        return;
    }
    let p = lm::load("gpt2", &LoadOptions::default()).unwrap();
    assert_eq!(p.model.config.arch, lm::Arch::Gpt2);
}

/// LoRA on GPT-2's Conv1D projections: every adapter gets a gradient, the default Llama
/// targets give a clear error, and the PEFT config says `fan_in_fan_out` with GPT-2's names
/// (checked against PEFT 0.21 with scripts/make_lora_golden.py --check, see README).
#[test]
fn gpt2_lora_adapts_c_attn_c_proj_c_fc() {
    let mut p = load("tiny-gpt2", false);
    let spec = |t: &str| lm::lora::LoraSpec {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec![t.to_string()],
        rslora: false,
    };
    let e = p
        .model
        .attach_lora(&spec("q_proj"), 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("c_attn") && e.contains("q_proj"), "{e}");
    let vars = p.model.attach_lora(&spec("all-linear"), 1).unwrap();
    assert_eq!(
        vars.len(),
        2 * 4 * 2,
        "A and B on 4 projections in each of 2 layers"
    );
    let batch = InputBatch::padded(&[vec![5u32, 9, 17, 33, 2]], 0, false);
    let loss = p
        .model
        .forward(&batch)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (n, v) in vars.iter().filter(|(n, _)| n.contains("lora_B")) {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {n}"));
        assert!(
            g.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0,
            "{n}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    lm::lora::save_adapter(&p.model, &spec("all-linear"), "tiny-gpt2", dir.path()).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["fan_in_fan_out"], true);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["c_attn", "c_proj", "c_fc"])
    );
}

/// `ModelConfig::num_parameters` equals `sum(p.numel() for p in model.parameters())` in
/// transformers (printed by scripts/make_arch_fixtures.py; tied embeddings counted once).
#[test]
fn parameter_counts_match_transformers() {
    for (name, want) in [
        ("tiny-gpt2", 132_864),
        ("tiny-mixtral", 222_016),
        ("tiny-qwen2-moe", 160_640),
        ("tiny-qwen3-moe", 172_992),
    ] {
        let p = load(name, false);
        assert_eq!(p.model.config.num_parameters(), want, "{name}");
        let stored: usize = p
            .model
            .named_tensors()
            .unwrap()
            .iter()
            .map(|(_, t)| t.elem_count())
            .sum();
        assert_eq!(stored, want, "{name}");
    }
}

/// Configs Rudder cannot run give one error naming the file and the field.
#[test]
fn unsupported_gpt2_and_moe_configs_name_the_field() {
    let cases = [
        ("tiny-mixtral", "num_experts_per_tok", serde_json::json!(5)),
        (
            "tiny-qwen2-moe",
            "mlp_only_layers",
            serde_json::json!("all"),
        ),
        (
            "tiny-gpt2",
            "activation_function",
            serde_json::json!("relu"),
        ),
        (
            "tiny-gpt2",
            "scale_attn_by_inverse_layer_idx",
            serde_json::json!(true),
        ),
    ];
    for (name, field, value) in cases {
        let path = fixture(name).join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v[field] = value;
        let e = lm::ModelConfig::from_json(v, &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(field) && e.contains("config.json"),
            "{name}: {e}"
        );
    }
}

/// Generation reads every weight through `lm::gemv::param`, so a trainable model (every tensor a
/// variable, LoRA on every linear layer) records no autograd graph while decoding: a PPO policy
/// sampling its rollouts keeps no activation alive. One weight read directly would make the
/// logits tracked. Outside decoding the same forward is recorded (training needs it).
#[test]
fn decoding_records_no_graph_from_trainable_weights() {
    let spec = lm::lora::LoraSpec {
        r: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets: vec!["all-linear".into()],
        rslora: false,
    };
    for name in [
        "tiny-llama",
        "tiny-qwen3",
        "tiny-gpt2",
        "tiny-mixtral",
        "tiny-qwen2-moe",
    ] {
        for lora in [false, true] {
            let mut p = load(name, !lora);
            if lora {
                p.model.attach_lora(&spec, 3).unwrap();
            }
            let batch = InputBatch::padded(&[vec![5u32, 9, 14, 30], vec![7, 8]], 0, false);
            let decoded = lm::gemv::decoding(|| p.model.forward(&batch)).unwrap();
            assert!(
                !decoded.track_op(),
                "{name} (lora {lora}): decoding recorded a graph"
            );
            let trained = p.model.forward(&batch).unwrap();
            assert!(
                trained.track_op(),
                "{name} (lora {lora}): training is recorded"
            );
            let d = (decoded - trained)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-4, "{name}: same logits");
        }
    }
}
