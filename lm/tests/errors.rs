//! Bad input gives one clear error naming the file and field, never a panic.
use lm::LoadOptions;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

/// A copy of tiny-llama whose config.json is edited by `edit`.
fn with_config(edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    edited("tiny-llama", edit)
}

/// A copy of fixture `name` whose config.json is edited by `edit`.
fn edited(name: &str, edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let p = dir.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    lm::load(dir.to_str().unwrap(), &LoadOptions::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn missing_model_is_named() {
    let e = lm::load("./no/such/model", &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("./no/such/model"), "{e}");
}

/// `<existing folder>/<missing>` reads as a local path (a stage output not written yet), so the
/// error is the missing folder, not a hub lookup.
#[test]
fn a_missing_folder_under_an_existing_one_is_not_looked_up_on_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("{}/nope", dir.path().display());
    let e = lm::load(&spec, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&spec) && e.contains("not looked up on the hub"),
        "{e}"
    );
    assert!(!e.contains("hf-hub") && !e.contains("cache"), "{e}");
}

/// `lm::load::check` finds what `load` would miss, without reading weights: a folder that is
/// not a model, an adapter, a missing tokenizer or weights, a broken config.json.
#[test]
fn check_finds_a_broken_model_folder_before_loading() {
    let check = |p: &Path| {
        lm::load::check(&p.display().to_string())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(lm::load::check(&fixture("tiny-llama").display().to_string()).is_ok());
    assert!(check(&fixture("tiny-llama-lora")).contains("rudder merge"));
    assert!(check(&fixture("")).contains("without config.json"));
    for (file, says) in [
        ("tokenizer.json", "no tokenizer.json"),
        ("model.safetensors", "no model.safetensors"),
    ] {
        let dir = with_config(|_| {});
        std::fs::remove_file(dir.path().join(file)).unwrap();
        assert!(check(dir.path()).contains(says), "{file}");
    }
    let dir = with_config(|v| v["hidden_size"] = "big".into());
    assert!(check(dir.path()).contains("config.json"));
}

#[test]
fn hub_id_offline_and_not_cached_says_so() {
    std::env::set_var("HF_HUB_OFFLINE", "1");
    std::env::set_var("HF_HOME", tempfile::tempdir().unwrap().path());
    let e = lm::load("nobody/nothing-here", &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nobody/nothing-here") && e.contains("cache") && e.contains("HF_HUB_OFFLINE"),
        "{e}"
    );
}

#[test]
fn unsupported_architecture_is_named() {
    let d = with_config(|v| {
        v["model_type"] = "gpt_neox".into();
        v["architectures"] = serde_json::json!(["GPTNeoXForCausalLM"]);
    });
    let e = load_err(d.path());
    assert!(e.contains("gpt_neox") && e.contains("unsupported"), "{e}");
}

#[test]
fn shape_mismatch_names_the_tensor() {
    let d = with_config(|v| v["intermediate_size"] = 96.into());
    let e = load_err(d.path());
    assert!(
        e.contains("mlp.gate_proj.weight") && e.contains("shape"),
        "{e}"
    );
}

#[test]
fn missing_field_is_named() {
    let d = with_config(|v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    let e = load_err(d.path());
    assert!(
        e.contains("config.json") && e.contains("hidden_size") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn tokenizer_larger_than_embedding_is_refused() {
    let d = with_config(|v| v["vocab_size"] = 10.into());
    let e = load_err(d.path());
    // Either the embedding's shape check or the vocab check fires; both name the problem.
    assert!(
        e.contains("vocab_size") || e.contains("embed_tokens"),
        "{e}"
    );
}

#[test]
fn malformed_jsonl_reports_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.jsonl");
    std::fs::write(&p, "{\"prompt\": \"a\"}\n\n{\"prompt\": oops}\n").unwrap();
    let e = lm::jsonl::read_rows(&p).unwrap_err().to_string();
    // serde counts within the line it parsed ("line 1"): only the file's line is named.
    assert!(
        e.contains("d.jsonl:3: invalid JSON at column 12: expected value"),
        "{e}"
    );
    assert!(!e.contains("line 1"), "{e}");
}

#[test]
fn hub_id_loads_from_the_local_cache_offline() {
    // hf-hub's cache layout: models--ORG--NAME/{refs/main, snapshots/REV/*}.
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--rudder-test--tiny");
    let snap = repo.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123").unwrap();
    for e in std::fs::read_dir(fixture("tiny-llama")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), snap.join(e.file_name())).unwrap();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hub_child", "--nocapture"])
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

/// Runs in a child process (env vars are process-wide): loads `rudder-test/tiny` by hub id.
#[test]
fn hub_child() {
    if std::env::var("RUDDER_HUB_CHILD").is_err() {
        return;
    }
    let p = lm::load("rudder-test/tiny", &LoadOptions::default()).unwrap();
    assert_eq!(p.model.config.vocab_size, 384);
}

/// The forward pass over one row of `len` tokens, as an error message if it fails.
fn forward_len(dir: &Path, len: usize) -> Result<(), String> {
    let m = lm::load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let row: Vec<u32> = (0..len as u32).map(|i| 3 + i % 50).collect();
    let batch = lm::InputBatch::padded(&[row], 0, false);
    m.model
        .forward(&batch)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Sliding-window attention is not implemented: up to the window it is plain causal attention;
/// a sequence reaching past it is refused, naming the field, instead of being silently wrong.
#[test]
fn a_sequence_past_the_sliding_window_is_refused() {
    let d = edited("tiny-mistral", |v| v["sliding_window"] = 8.into());
    assert_eq!(forward_len(d.path(), 8), Ok(()));
    let e = forward_len(d.path(), 9).unwrap_err();
    assert!(e.contains("sliding_window") && e.contains("8"), "{e}");
    // No window: any length up to the fixture's positions runs.
    let d = edited("tiny-mistral", |v| {
        v["sliding_window"] = serde_json::Value::Null
    });
    assert_eq!(forward_len(d.path(), 40), Ok(()));
    // Absent, transformers' MistralConfig defaults it to 4096 (Mixtral's to none).
    let cfg = |model_type: &str| {
        let v = serde_json::json!({"model_type": model_type, "vocab_size": 64,
            "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_local_experts": 2, "num_experts_per_tok": 1});
        lm::ModelConfig::from_json(v, Path::new("config.json")).unwrap()
    };
    assert_eq!(cfg("mistral").sliding_window, Some(4096));
    assert_eq!(cfg("mixtral").sliding_window, None);
}

/// Qwen layers slide only with `use_sliding_window`, on the layers transformers picks.
#[test]
fn qwen_sliding_window_follows_use_sliding_window_and_layer_types() {
    let window = |edit: serde_json::Value| {
        let mut v = serde_json::json!({
            "model_type": "qwen2", "vocab_size": 64, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2,
            "sliding_window": 32, "max_window_layers": 4,
        });
        for (k, x) in edit.as_object().unwrap() {
            v[k] = x.clone();
        }
        lm::ModelConfig::from_json(v, Path::new("config.json"))
            .unwrap()
            .sliding_window
    };
    // Off by default (Qwen2.5 ships `use_sliding_window: false`).
    assert_eq!(window(serde_json::json!({})), None);
    // On, but max_window_layers = num_hidden_layers: no layer slides.
    assert_eq!(
        window(serde_json::json!({"use_sliding_window": true})),
        None
    );
    let on = serde_json::json!({"use_sliding_window": true, "max_window_layers": 2});
    assert_eq!(window(on), Some(32));
    let types = serde_json::json!({"use_sliding_window": true,
        "layer_types": ["full_attention", "sliding_attention", "full_attention", "full_attention"]});
    assert_eq!(window(types), Some(32));
}

#[test]
fn gpt2_positions_past_n_positions_are_refused() {
    let d = edited("tiny-gpt2", |_| {});
    let n = lm::ModelConfig::from_file(&d.path().join("config.json"))
        .unwrap()
        .max_position_embeddings;
    assert_eq!(forward_len(d.path(), n), Ok(()));
    let e = forward_len(d.path(), n + 1).unwrap_err();
    assert!(e.contains("n_positions"), "{e}");
}

#[test]
fn truncated_weights_file_is_named() {
    let d = with_config(|_| {});
    let p = d.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(d.path());
    assert!(e.contains("model.safetensors"), "{e}");
}

/// Dynamic NTK scaling is plain RoPE up to `max_position_embeddings` (transformers recomputes
/// the frequencies only past it): the same logits as without scaling there; past it, refused.
#[test]
fn dynamic_rope_is_plain_rope_within_max_positions_and_refused_past_them() {
    let plain = edited("tiny-mistral", |v| v["max_position_embeddings"] = 16.into());
    let dynamic = edited("tiny-mistral", |v| {
        v["max_position_embeddings"] = 16.into();
        v["rope_parameters"] =
            serde_json::json!({"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0});
    });
    let logits = |d: &Path, len: usize| {
        let m = lm::load(d.to_str().unwrap(), &LoadOptions::default()).unwrap();
        let row: Vec<u32> = (0..len as u32).map(|i| 3 + i % 50).collect();
        m.model
            .forward(&lm::InputBatch::padded(&[row], 0, false))
            .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .map_err(|e| e.to_string())
    };
    assert_eq!(logits(dynamic.path(), 16), logits(plain.path(), 16));
    let e = logits(dynamic.path(), 17).unwrap_err();
    assert!(e.contains("dynamic RoPE") && e.contains("16"), "{e}");
}

/// A prompt that is neither text nor messages says what it may be (serde's untagged enum said
/// "data did not match any variant of untagged enum TextOrMessages"); a bad message says why.
#[test]
fn a_prompt_of_the_wrong_shape_says_what_it_may_be() {
    use serde_json::json;
    let e = |v: serde_json::Value| {
        serde_json::from_value::<lm::TextOrMessages>(v)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let may_be = r#"a string, or a list of {"role", "content"} messages"#;
    let object = e(json!({"role": "user", "content": "hi"}));
    assert!(
        object.contains(may_be) && !object.contains("untagged"),
        "{object}"
    );
    assert!(e(json!(3)).contains(may_be));
    assert!(e(json!([{"role": "user"}])).contains("a `user` message without `content`"));
    assert!(e(json!(["hi"])).contains(r#"expected a message {"role", "content"}"#));
    let ok = |v| serde_json::from_value::<lm::TextOrMessages>(v).is_ok();
    assert!(ok(json!("hi")) && ok(json!([{"role": "user", "content": "hi"}])) && ok(json!([])));
}
