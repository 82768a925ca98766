//! Tests of `lm::gguf`.
//!
//! The SmolLM2 tests need the real GGUF (`scripts/fetch-smollm2.sh`, found through
//! `RUDDER_SMOLLM2_GGUF` or `.cache/models/` in the workspace root) and compare against
//! `fixtures/gguf/smollm2_goldens.json` (from `scripts/make_gguf_goldens.py`, i.e. transformers).
//! Without the file they skip locally and fail under CI. The synthetic tests write tiny GGUF files
//! with candle's writer and always run.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use lm::gguf::{permute_qk_rows, read_gguf, unpermute_qk_rows, GgufContents, GgufError};
use serde_json::{json, Value as Json};
use tokenizers::Tokenizer;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("lm/ sits in the workspace root")
        .to_path_buf()
}

/// The real model, read once per test binary; `None` means "skip" (never under CI).
fn smollm2() -> Option<&'static GgufContents> {
    static CONTENTS: OnceLock<Option<GgufContents>> = OnceLock::new();
    CONTENTS
        .get_or_init(|| {
            let path = std::env::var_os("RUDDER_SMOLLM2_GGUF")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    workspace_root().join(".cache/models/smollm2-135m-instruct.gguf")
                });
            if !path.is_file() {
                let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
                assert!(
                    !in_ci,
                    "{} is missing: CI must run scripts/fetch-smollm2.sh first",
                    path.display()
                );
                eprintln!(
                    "skipped: {} not found; run scripts/fetch-smollm2.sh",
                    path.display()
                );
                return None;
            }
            Some(read_gguf(&path).unwrap_or_else(|e| panic!("{e}")))
        })
        .as_ref()
}

fn goldens() -> &'static Json {
    static GOLDENS: OnceLock<Json> = OnceLock::new();
    GOLDENS.get_or_init(|| {
        let path = workspace_root().join("fixtures/gguf/smollm2_goldens.json");
        let text = std::fs::read_to_string(&path).expect("goldens file is committed");
        serde_json::from_str(&text).expect("goldens are valid JSON")
    })
}

fn tensor<'a>(c: &'a GgufContents, name: &str) -> &'a Tensor {
    let found = c.tensors.iter().find(|(n, _)| n == name);
    &found.unwrap_or_else(|| panic!("no tensor {name}")).1
}

fn f64s(v: &Json) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w}");
    }
}

/// Config values compared verbatim with what transformers derived.
#[rustfmt::skip]
const CONFIG_KEYS: [&str; 13] = [
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "max_position_embeddings", "vocab_size",
    "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
];

#[test]
fn smollm2_config_matches_transformers() {
    let Some(c) = smollm2() else { return };
    let want = &goldens()["config"];
    let cfg = &c.config;
    assert_eq!(cfg["architectures"], json!(["LlamaForCausalLM"]));
    assert_eq!(cfg["torch_dtype"], "float32");
    for key in CONFIG_KEYS {
        assert_eq!(cfg[key], want[key], "config.{key}");
    }
    let eps = cfg["rms_norm_eps"].as_f64().unwrap();
    assert!((eps - want["rms_norm_eps"].as_f64().unwrap()).abs() < 1e-12);
    assert_eq!(cfg["rope_theta"].as_f64(), want["rope_theta"].as_f64());
    assert_eq!(want["rope_type"], "default");
    assert!(cfg["rope_scaling"].is_null());
    assert_eq!(
        c.generation_config,
        json!({"bos_token_id": 1, "eos_token_id": 2})
    );
}

#[test]
fn smollm2_tensor_names_and_shapes() {
    let Some(c) = smollm2() else { return };
    // embed + final norm + 30 layers x 9 tensors; tied embeddings, so no lm_head.
    assert_eq!(c.tensors.len(), 2 + 30 * 9);
    assert_eq!(c.tensors[0].0, "model.embed_tokens.weight");
    assert!(c.tensors.iter().all(|(n, _)| n != "lm_head.weight"));
    let (h, i, kv) = (576, 1536, 3 * 64);
    #[rustfmt::skip]
    let layer_shapes: [(&str, &[usize]); 9] = [
        ("input_layernorm.weight", &[h]), ("post_attention_layernorm.weight", &[h]),
        ("self_attn.q_proj.weight", &[h, h]), ("self_attn.k_proj.weight", &[kv, h]),
        ("self_attn.v_proj.weight", &[kv, h]), ("self_attn.o_proj.weight", &[h, h]),
        ("mlp.gate_proj.weight", &[i, h]), ("mlp.up_proj.weight", &[i, h]),
        ("mlp.down_proj.weight", &[h, i]),
    ];
    for layer in 0..30 {
        for (suffix, shape) in layer_shapes {
            let t = tensor(c, &format!("model.layers.{layer}.{suffix}"));
            assert_eq!(t.dims(), shape, "layer {layer} {suffix}");
        }
    }
    assert_eq!(tensor(c, "model.embed_tokens.weight").dims(), &[49152, h]);
    assert_eq!(tensor(c, "model.norm.weight").dims(), &[h]);
    for (name, t) in &c.tensors {
        assert_eq!(t.dtype(), DType::F32, "{name}");
        assert!(t.device().is_cpu(), "{name}");
    }
}

#[test]
fn smollm2_tensor_slices_match_transformers() {
    let Some(c) = smollm2() else { return };
    let want = goldens()["tensors"].as_object().unwrap();
    for (name, g) in want {
        let t = tensor(c, name).to_dtype(DType::F64).unwrap();
        let shape: Vec<usize> = f64s(&g["shape"]).iter().map(|&d| d as usize).collect();
        assert_eq!(t.dims(), shape.as_slice(), "{name} shape");
        let rows = if t.rank() == 1 {
            t.unsqueeze(0)
        } else {
            Ok(t.clone())
        }
        .unwrap();
        let row = |r: usize, from: usize| -> Vec<f64> {
            let r = rows.get(r).and_then(|r| r.narrow(0, from, 8));
            r.and_then(|r| r.to_vec1()).unwrap()
        };
        let cols = rows.dim(1).unwrap();
        assert_close(&format!("{name} row0"), &row(0, 0), &f64s(&g["row0"]), 1e-5);
        if !g["row5"].is_null() {
            assert_close(&format!("{name} row5"), &row(5, 0), &f64s(&g["row5"]), 1e-5);
        }
        let last = rows.dim(0).unwrap() - 1;
        assert_close(
            &format!("{name} last"),
            &row(last, cols - 8),
            &f64s(&g["row_last"]),
            1e-5,
        );
        for (stat, got) in [
            ("sum", t.sum_all()),
            ("abs_sum", t.abs().unwrap().sum_all()),
        ] {
            let got: f64 = got.unwrap().to_scalar().unwrap();
            let want = g[stat].as_f64().unwrap();
            let tol = 1e-6 * g["abs_sum"].as_f64().unwrap();
            assert!(
                (got - want).abs() <= tol,
                "{name} {stat}: got {got}, want {want}"
            );
        }
    }
}

fn smollm2_tokenizer(c: &GgufContents) -> Tokenizer {
    let text = serde_json::to_string(&c.tokenizer_json).unwrap();
    Tokenizer::from_str(&text).unwrap_or_else(|e| panic!("tokenizer.json does not load: {e}"))
}

#[test]
fn smollm2_tokenizer_matches_transformers() {
    let Some(c) = smollm2() else { return };
    let tok = smollm2_tokenizer(c);
    assert_eq!(
        c.tokenizer_json["pre_tokenizer"]["pretokenizers"][0]["type"],
        "Digits"
    );
    let cases = goldens()["tokenizer_cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ids, want, "ids of {text:?}");
        let decoded = tok.decode(&ids, false).unwrap();
        assert_eq!(decoded, text, "round trip of {text:?}");
        assert_eq!(decoded, case["decoded"].as_str().unwrap());
    }
    let chat = &goldens()["chat"];
    let want: Vec<u32> = serde_json::from_value(chat["ids"].clone()).unwrap();
    let ids = tok
        .encode(chat["rendered"].as_str().unwrap(), false)
        .unwrap();
    assert_eq!(ids.get_ids(), want.as_slice(), "chat ids");
}

#[test]
fn smollm2_tokenizer_config_and_chat_template() {
    let Some(c) = smollm2() else { return };
    let g = goldens();
    let cfg = &c.tokenizer_config;
    for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
        assert_eq!(cfg[key], g["special_tokens"][key], "{key}");
    }
    assert_eq!(cfg["chat_template"], g["chat_template"]);
    assert_eq!(cfg["add_bos_token"], false);
    assert_eq!(cfg["model_max_length"], 8192);
    // The template renders the golden conversation exactly (what lm's chat code will do).
    let mut env = minijinja::Environment::new();
    env.add_template("chat", cfg["chat_template"].as_str().unwrap())
        .unwrap();
    let chat = &g["chat"];
    let ctx = json!({"messages": chat["messages"], "add_generation_prompt": true});
    let rendered = env.get_template("chat").unwrap().render(ctx).unwrap();
    assert_eq!(rendered, chat["rendered"].as_str().unwrap());
}

// ---------------------------------------------------------------------------------------------
// Synthetic files: no download needed.

#[test]
fn unpermute_undoes_llama_cpp_permutation() {
    let (n_head, head_dim, cols) = (3, 4, 2);
    let rows = n_head * head_dim;
    let hf: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
    let hf = Tensor::from_vec(hf, (rows, cols), &Device::Cpu).unwrap();
    let permuted = permute_qk_rows(&hf, n_head).unwrap();
    // llama.cpp: w.reshape(n_head, 2, d/2, cols).swapaxes(1, 2): row h*d + 2i + j of the file is
    // HF row h*d + j*d/2 + i (rotary halves interleaved into adjacent pairs).
    let got: Vec<Vec<f32>> = permuted.to_vec2().unwrap();
    for h in 0..n_head {
        for i in 0..head_dim / 2 {
            for j in 0..2 {
                let src = h * head_dim + j * head_dim / 2 + i;
                let want = vec![(src * cols) as f32, (src * cols + 1) as f32];
                assert_eq!(got[h * head_dim + 2 * i + j], want);
            }
        }
    }
    let back = unpermute_qk_rows(&permuted, n_head).unwrap();
    assert_eq!(back.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
    // Biases (1-D) go through the same row permutation.
    let bias = Tensor::arange(0f32, rows as f32, &Device::Cpu).unwrap();
    let round = unpermute_qk_rows(&permute_qk_rows(&bias, n_head).unwrap(), n_head).unwrap();
    assert_eq!(
        round.to_vec1::<f32>().unwrap(),
        bias.to_vec1::<f32>().unwrap()
    );
    assert!(
        unpermute_qk_rows(&hf, 5).is_err(),
        "rows not divisible into heads"
    );
}

/// HF → llama.cpp tensor-name pieces (the substitutions convert_hf_to_gguf performs).
#[rustfmt::skip]
const HF_TO_GGUF: [(&str, &str); 15] = [
    ("model.embed_tokens.weight", "token_embd.weight"), ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"), ("model.layers.0.", "blk.0."),
    ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm"),
    ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"), ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];

/// `{arch}.*` hyper-parameters of the tiny model (mixed integer widths, as real files have).
#[rustfmt::skip]
const TINY_HPARAMS: [(&str, Value); 8] = [
    ("block_count", Value::U32(1)), ("context_length", Value::U64(32)),
    ("embedding_length", Value::U32(8)), ("feed_forward_length", Value::U32(12)),
    ("attention.head_count", Value::U32(2)), ("attention.head_count_kv", Value::U32(1)),
    ("rope.freq_base", Value::F32(10000.0)), ("attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
];

/// The tiny model's layer tensors: (HF suffix, shape, only for this arch).
#[rustfmt::skip]
const TINY_LAYER: [(&str, &[usize], Option<&str>); 14] = [
    ("input_layernorm.weight", &[8], None), ("post_attention_layernorm.weight", &[8], None),
    ("self_attn.q_proj.weight", &[8, 8], None), ("self_attn.k_proj.weight", &[4, 8], None),
    ("self_attn.v_proj.weight", &[4, 8], None), ("self_attn.o_proj.weight", &[8, 8], None),
    ("mlp.gate_proj.weight", &[12, 8], None), ("mlp.up_proj.weight", &[12, 8], None),
    ("mlp.down_proj.weight", &[8, 12], None),
    ("self_attn.q_proj.bias", &[8], Some("qwen2")), ("self_attn.k_proj.bias", &[4], Some("qwen2")),
    ("self_attn.v_proj.bias", &[4], Some("qwen2")),
    ("self_attn.q_norm.weight", &[4], Some("qwen3")), ("self_attn.k_norm.weight", &[4], Some("qwen3")),
];

/// A tiny model: HF-layout tensors plus the GGUF metadata llama.cpp would write for them.
struct Tiny {
    arch: &'static str,
    hf: Vec<(String, Tensor)>,
    meta: Vec<(String, Value)>,
}

impl Tiny {
    /// hidden 8, 2 heads of 4, 1 KV head, 1 layer, vocab 4, untied LM head.
    fn new(arch: &'static str) -> Self {
        let rand = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap();
        let mut hf: Vec<(String, Tensor)> = vec![
            ("model.embed_tokens.weight".into(), rand(&[4, 8])),
            ("model.norm.weight".into(), rand(&[8])),
            ("lm_head.weight".into(), rand(&[4, 8])),
        ];
        let layer = TINY_LAYER
            .iter()
            .filter(|(_, _, only)| only.is_none_or(|a| a == arch));
        hf.extend(
            layer
                .into_iter()
                .map(|(n, s, _)| (format!("model.layers.0.{n}"), rand(s))),
        );
        Self {
            arch,
            hf,
            meta: tiny_metadata(arch),
        }
    }

    /// The llama.cpp name of an HF tensor, with Q/K rows permuted as convert_hf_to_gguf does
    /// for llama only.
    fn gguf_tensor(&self, name: &str, t: &Tensor) -> (String, Tensor) {
        let gguf = HF_TO_GGUF
            .iter()
            .fold(name.to_string(), |n, (a, b)| n.replace(a, b));
        let heads = match (self.arch, name.contains("q_proj"), name.contains("k_proj")) {
            ("llama", true, _) => Some(2),
            ("llama", _, true) => Some(1),
            _ => None,
        };
        let t = heads.map_or_else(|| t.clone(), |h| permute_qk_rows(t, h).unwrap());
        (gguf, t)
    }

    fn write(&self, dir: &Path, tensors: &[(String, Tensor)]) -> PathBuf {
        let q: Vec<(String, QTensor)> = tensors
            .iter()
            .map(|(n, t)| (n.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap()))
            .collect();
        let meta: Vec<(&str, &Value)> = self.meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let qs: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut buf = Cursor::new(Vec::new());
        gguf_file::write(&mut buf, &meta, &qs).unwrap();
        let path = dir.join(format!("tiny-{}.gguf", self.arch));
        std::fs::write(&path, buf.into_inner()).unwrap();
        path
    }

    fn write_gguf(&self, dir: &Path) -> PathBuf {
        let tensors: Vec<_> = self
            .hf
            .iter()
            .map(|(n, t)| self.gguf_tensor(n, t))
            .collect();
        self.write(dir, &tensors)
    }

    fn set(&mut self, key: &str, value: Value) {
        self.meta.retain(|(k, _)| k != key);
        self.meta.push((key.to_string(), value));
    }
}

fn tiny_metadata(arch: &str) -> Vec<(String, Value)> {
    let strings = |v: &[&str]| Value::Array(v.iter().map(|&s| Value::String(s.into())).collect());
    let tok = |k: &str| format!("tokenizer.ggml.{k}");
    let mut meta = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (tok("model"), Value::String("gpt2".into())),
        (tok("pre"), Value::String("smollm".into())),
        (tok("tokens"), strings(&["<|endoftext|>", "a", "b", "ab"])),
        (
            tok("token_type"),
            Value::Array([3, 1, 1, 1].map(Value::I32).to_vec()),
        ),
        (tok("merges"), strings(&["a b"])),
        (tok("bos_token_id"), Value::U32(0)),
        (tok("eos_token_id"), Value::U32(0)),
        (
            "tokenizer.chat_template".into(),
            Value::String("{{ messages }}".into()),
        ),
    ];
    let hp = TINY_HPARAMS
        .iter()
        .map(|(k, v)| (format!("{arch}.{k}"), v.clone()));
    meta.extend(hp);
    meta
}

#[test]
fn synthetic_models_round_trip_to_hf_layout() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2", "qwen3"] {
        let tiny = Tiny::new(arch);
        let c = read_gguf(&tiny.write_gguf(dir.path())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.tensors.len(), tiny.hf.len(), "{arch}");
        for (name, want) in &tiny.hf {
            let got = tensor(&c, name);
            assert_eq!(got.dims(), want.dims(), "{arch} {name}");
            let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).unwrap();
            assert_eq!(flat(got), flat(want), "{arch} {name}");
        }
        assert_eq!(c.config["model_type"], arch);
        assert_eq!(c.config["tie_word_embeddings"], false);
        assert_eq!(c.config["head_dim"], 4);
        assert_eq!(c.config["num_key_value_heads"], 1);
        assert_eq!(c.config["max_position_embeddings"], 32);
        assert_eq!(c.config["vocab_size"], 4);
        assert_eq!(c.config["attention_bias"], arch == "qwen2");
        let tok = Tokenizer::from_str(&serde_json::to_string(&c.tokenizer_json).unwrap()).unwrap();
        let ids = |s: &str| tok.encode(s, false).unwrap().get_ids().to_vec();
        assert_eq!(ids("ab"), [3]);
        assert_eq!(ids("ba"), [2, 1]);
        assert_eq!(ids("<|endoftext|>ab"), [0, 3]);
        assert_eq!(c.tokenizer_config["chat_template"], "{{ messages }}");
    }
}

/// Asserts an error is the expected variant, showing its message otherwise.
macro_rules! assert_variant {
    ($err:expr, $($pat:tt)+) => {{
        let err = &$err;
        assert!(matches!(err, $($pat)+), "{err}");
    }};
}

fn read_err(path: &Path) -> GgufError {
    match read_gguf(path) {
        Ok(_) => panic!("{} should not load", path.display()),
        Err(e) => e,
    }
}

#[test]
fn bad_metadata_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut tiny = Tiny::new("llama");
    tiny.meta.retain(|(k, _)| k != "llama.embedding_length");
    let path = tiny.write_gguf(dir.path());
    let err = read_err(&path);
    assert_variant!(err, GgufError::MissingKey { key, .. } if key == "llama.embedding_length");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("llama.embedding_length"),
        "{msg}"
    );

    let mut tiny = Tiny::new("llama");
    tiny.set("general.architecture", Value::String("gemma3".into()));
    let err = read_err(&tiny.write_gguf(dir.path()));
    assert_variant!(err, GgufError::UnsupportedArch { arch, .. } if arch == "gemma3");

    let mut tiny = Tiny::new("llama");
    tiny.set("tokenizer.ggml.pre", Value::String("mystery".into()));
    let err = read_err(&tiny.write_gguf(dir.path()));
    assert!(err.to_string().contains("mystery"), "{err}");

    let mut tiny = Tiny::new("llama");
    tiny.set("tokenizer.ggml.eos_token_id", Value::U32(99));
    let err = read_err(&tiny.write_gguf(dir.path()));
    assert_variant!(err, GgufError::BadValue { key, .. } if key == "tokenizer.ggml.eos_token_id");
}

#[test]
fn bad_tensors_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny::new("llama");
    let mut tensors: Vec<_> = tiny
        .hf
        .iter()
        .map(|(n, t)| tiny.gguf_tensor(n, t))
        .collect();
    tensors.retain(|(n, _)| n != "blk.0.ffn_up.weight");
    let err = read_err(&tiny.write(dir.path(), &tensors));
    assert_variant!(err, GgufError::MissingTensor { name, .. } if name == "blk.0.ffn_up.weight");

    let wrong = Tensor::zeros((12, 4), DType::F32, &Device::Cpu).unwrap();
    tensors.push(("blk.0.ffn_up.weight".into(), wrong));
    let err = read_err(&tiny.write(dir.path(), &tensors));
    assert_variant!(err, GgufError::BadShape { name, .. } if name == "blk.0.ffn_up.weight");

    tensors.pop();
    let moe = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    tensors.push(("blk.0.ffn_gate_exps.weight".into(), moe));
    let err = read_err(&tiny.write(dir.path(), &tensors));
    assert_variant!(err, GgufError::UnknownTensor { name, .. } if name == "blk.0.ffn_gate_exps.weight");
}

#[test]
fn truncated_and_garbage_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_err(&dir.path().join("absent.gguf"));
    assert!(matches!(err, GgufError::Io { .. }), "{err}");

    let garbage = dir.path().join("garbage.gguf");
    let texts: [&[u8]; 3] = [b"", b"GGUF", b"not a gguf file at all, just text"];
    for bytes in texts.into_iter().chain([&[0xff; 4096][..]]) {
        std::fs::write(&garbage, bytes).unwrap();
        let err = read_err(&garbage);
        assert!(err.to_string().contains("garbage.gguf"), "{err}");
    }

    let full = std::fs::read(Tiny::new("llama").write_gguf(dir.path())).unwrap();
    // The last 32 bytes may be only alignment padding; anything shorter cuts real data.
    let cut = dir.path().join("cut.gguf");
    for len in (0..full.len() - 32).step_by(37).chain([full.len() - 33]) {
        std::fs::write(&cut, &full[..len]).unwrap();
        let _ = read_err(&cut);
    }
}
