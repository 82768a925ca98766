//! Writing a model folder that transformers' `from_pretrained` and Rudder both load.
use crate::error::{Error, Result};
use crate::model::CausalLm;
use crate::tokenizer::Tokenizer;
use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::path::Path;

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// config.json for the saved weights: the original fields plus what we know for certain.
pub fn config_json(model: &CausalLm, architecture: &str) -> serde_json::Value {
    let c = &model.config;
    let mut v = c.raw.clone();
    if !v.is_object() {
        v = serde_json::json!({});
    }
    v["architectures"] = serde_json::json!([architecture]);
    v["model_type"] = c.arch.model_type().into();
    v["vocab_size"] = c.vocab_size.into();
    v["tie_word_embeddings"] = c.tie_word_embeddings.into();
    v["torch_dtype"] = "float32".into();
    if c.gpt2.is_some() {
        // GPT2Config's own names (the Llama ones would be aliases of them).
        v["n_embd"] = c.hidden_size.into();
        v["n_layer"] = c.num_layers.into();
        v["n_head"] = c.num_heads.into();
        v["n_inner"] = c.intermediate_size.into();
        v["n_positions"] = c.max_position_embeddings.into();
        return v;
    }
    v["hidden_size"] = c.hidden_size.into();
    v["intermediate_size"] = c.intermediate_size.into();
    v["num_hidden_layers"] = c.num_layers.into();
    v["num_attention_heads"] = c.num_heads.into();
    v["num_key_value_heads"] = c.num_kv_heads.into();
    v["head_dim"] = c.head_dim.into();
    v
}

/// Writes `model.safetensors`, `config.json`, `generation_config.json` and the tokenizer files.
pub fn save_pretrained(model: &CausalLm, tok: &Tokenizer, dir: &Path) -> Result<()> {
    let arch = model.config.arch.causal_lm_class();
    save_with(model, tok, dir, &arch, &[])
}

/// Like [`save_pretrained`] with extra tensors (e.g. a reward head) and another architecture.
pub fn save_with(
    model: &CausalLm,
    tok: &Tokenizer,
    dir: &Path,
    architecture: &str,
    extra: &[(String, Tensor)],
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in model
        .named_tensors()?
        .into_iter()
        .chain(extra.iter().cloned())
    {
        // Saved as f32 contiguous CPU tensors so a reload is bit-exact.
        let t = t
            .to_dtype(DType::F32)?
            .to_device(&candle_core::Device::Cpu)?
            .contiguous()?;
        tensors.insert(name, t);
    }
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &path).map_err(|e| Error::Weight {
        path: path.clone(),
        name: "*".into(),
        reason: e.to_string(),
    })?;
    write_json(&dir.join("config.json"), &config_json(model, architecture))?;
    save_tokenizer(model, tok, dir)
}

/// Writes `tokenizer.json`, `tokenizer_config.json` (with the chat template) and
/// `generation_config.json`.
pub fn save_tokenizer(model: &CausalLm, tok: &Tokenizer, dir: &Path) -> Result<()> {
    let path = dir.join("tokenizer.json");
    tok.inner
        .save(&path, false)
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    let mut cfg = tok.config_json.clone();
    if !cfg.is_object() {
        cfg = serde_json::json!({});
    }
    if cfg.get("tokenizer_class").is_none() {
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast".into();
    }
    if let Some(t) = &tok.chat_template {
        cfg["chat_template"] = t.clone().into();
    }
    write_json(&dir.join("tokenizer_config.json"), &cfg)?;
    let c = &model.config;
    let mut gen = serde_json::json!({ "eos_token_id": tok.eos_ids, "pad_token_id": tok.pad_id });
    if let Some(b) = c.bos_token_id {
        gen["bos_token_id"] = b.into();
    }
    write_json(&dir.join("generation_config.json"), &gen)
}

/// Folds the PEFT LoRA adapter in `adapter` into its base model `base` (HF folder, hub id or
/// `.gguf`) and writes the full model folder `out`; the base itself is not changed. Returns the
/// adapter's spec.
pub fn merge_adapter(
    base: &str,
    adapter: &Path,
    out: &Path,
    opts: &crate::LoadOptions,
) -> Result<crate::lora::LoraSpec> {
    let opts = crate::LoadOptions {
        trainable: false,
        ..opts.clone()
    };
    let mut pre = crate::load(base, &opts)?;
    let (spec, _) = pre.model.load_adapter(adapter)?;
    save_pretrained(&pre.model, &pre.tokenizer, out)?;
    Ok(spec)
}
