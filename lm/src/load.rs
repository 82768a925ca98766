//! `--model` resolution: a Hugging Face folder, a hub id (through the local hf-hub cache), or a
//! GGUF file; and the one `load` every stage calls.
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::CausalLm;
use crate::tokenizer::Tokenizer;
use crate::weights::{read_safetensors, Precision};
use candle_core::{Device, Var};
use std::path::{Path, PathBuf};

/// Where a model's files are.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Folder(PathBuf),
    Gguf(PathBuf),
}

/// A loaded model with its tokenizer; `params` holds the trainable `Var`s (empty when frozen).
#[derive(Debug)]
pub struct Pretrained {
    pub model: CausalLm,
    pub tokenizer: Tokenizer,
    pub params: Vec<(String, Var)>,
    pub source: ModelSource,
}

/// How to load: device, precision, and whether the weights are trainable.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub precision: Precision,
    pub trainable: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            precision: Precision::default(),
            trainable: false,
        }
    }
}

const HUB_FILES: [&str; 5] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "chat_template.jinja",
];

/// Hub ids without an organisation that tutorials use (`gpt2`), and the repos they moved to.
const LEGACY_IDS: [(&str, &str); 5] = [
    ("gpt2", "openai-community/gpt2"),
    ("gpt2-medium", "openai-community/gpt2-medium"),
    ("gpt2-large", "openai-community/gpt2-large"),
    ("gpt2-xl", "openai-community/gpt2-xl"),
    ("distilgpt2", "distilbert/distilgpt2"),
];

/// Turns a `--model` argument into files on disk.
pub fn resolve(spec: &str) -> Result<ModelSource> {
    let path = Path::new(spec);
    if path.is_file() {
        return match path.extension().and_then(|e| e.to_str()) {
            Some("gguf") => Ok(ModelSource::Gguf(path.to_path_buf())),
            _ => Err(Error::NotFound {
                spec: spec.into(),
                reason: "a file that is not .gguf (give the model folder instead)".into(),
            }),
        };
    }
    if path.is_dir() {
        return Ok(ModelSource::Folder(path.to_path_buf()));
    }
    if let Some((_, id)) = LEGACY_IDS.iter().find(|(name, _)| *name == spec) {
        return from_hub(id);
    }
    // `runs/nope` where `runs/` is a folder here is a missing output, not a hub id.
    let local_parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && p.is_dir());
    if let Some(parent) = local_parent {
        return Err(Error::NotFound {
            spec: spec.into(),
            reason: format!(
                "no such file or folder in {} (a local path: not looked up on the hub)",
                parent.display()
            ),
        });
    }
    let looks_like_hub =
        spec.split('/').count() == 2 && !spec.starts_with('.') && !spec.starts_with('/');
    if !looks_like_hub {
        return Err(Error::NotFound {
            spec: spec.into(),
            reason: "no such file or folder, and not a hub id of the form org/name".into(),
        });
    }
    from_hub(spec)
}

/// A hub id from hf-hub's local cache; downloads only when the hub is reachable and
/// `HF_HUB_OFFLINE` is unset.
fn from_hub(id: &str) -> Result<ModelSource> {
    let cache = hf_hub::Cache::from_env();
    let repo = cache.model(id.to_string());
    if let Some(cfg) = repo.get("config.json") {
        let dir = cfg.parent().map(Path::to_path_buf).unwrap_or_default();
        if dir.join("model.safetensors").exists()
            || dir.join("model.safetensors.index.json").exists()
        {
            return Ok(ModelSource::Folder(dir));
        }
    }
    let offline = std::env::var("HF_HUB_OFFLINE")
        .map(|v| v == "1" || v == "true")
        .unwrap_or(false);
    let not_cached = format!("not in the local hf-hub cache ({})", cache.path().display());
    if offline {
        return Err(Error::NotFound {
            spec: id.into(),
            reason: format!("{not_cached} and HF_HUB_OFFLINE is set"),
        });
    }
    download(id).map_err(|e| Error::NotFound {
        spec: id.into(),
        reason: format!("{not_cached}, and the hub could not be reached: {e}"),
    })
}

fn download(id: &str) -> std::result::Result<ModelSource, String> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(id.to_string());
    let cfg = repo.get("config.json").map_err(|e| e.to_string())?;
    for f in &HUB_FILES[1..] {
        // Optional files: a repo may lack generation_config.json or chat_template.jinja.
        let _ = repo.get(f);
    }
    if repo.get("model.safetensors").is_err() {
        let index = repo
            .get("model.safetensors.index.json")
            .map_err(|e| e.to_string())?;
        for shard in shard_names(&index)? {
            repo.get(&shard).map_err(|e| e.to_string())?;
        }
    }
    Ok(ModelSource::Folder(
        cfg.parent().map(Path::to_path_buf).unwrap_or_default(),
    ))
}

fn shard_names(index: &Path) -> std::result::Result<Vec<String>, String> {
    let text = std::fs::read_to_string(index).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = v["weight_map"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Checks a `--model` spec in milliseconds, reading no weights: it resolves ([`resolve`]), and
/// a folder holds a valid config.json, a tokenizer.json and safetensors weights. What
/// [`load`] would find missing a minute later is an error now.
pub fn check(spec: &str) -> Result<ModelSource> {
    let source = resolve(spec)?;
    let ModelSource::Folder(dir) = &source else {
        return Ok(source);
    };
    let missing = |reason: &str| Error::NotFound {
        spec: spec.into(),
        reason: format!("{} ({})", reason, dir.display()),
    };
    if !dir.join("config.json").is_file() {
        return Err(missing(if dir.join("adapter_config.json").is_file() {
            "a LoRA adapter, not a model: merge it into its base with `rudder merge` first"
        } else {
            "a folder without config.json: not a model folder"
        }));
    }
    ModelConfig::from_file(&dir.join("config.json"))?;
    if !dir.join("tokenizer.json").is_file() {
        return Err(missing("no tokenizer.json in the folder"));
    }
    let weights = ["model.safetensors", "model.safetensors.index.json"];
    if !weights.iter().any(|w| dir.join(w).is_file()) {
        return Err(missing(
            "no model.safetensors or model.safetensors.index.json in the folder",
        ));
    }
    Ok(source)
}

/// Loads a model and its tokenizer from any `--model` spec.
pub fn load(spec: &str, opts: &LoadOptions) -> Result<Pretrained> {
    let source = resolve(spec)?;
    let (config, tensors, origin, tokenizer) = match &source {
        ModelSource::Folder(dir) => {
            let config = ModelConfig::from_file(&dir.join("config.json"))?;
            let tokenizer = Tokenizer::from_folder(dir, &config.eos_token_ids)?;
            let (tensors, origin) = read_safetensors(dir, &opts.device)?;
            (config, tensors, origin, tokenizer)
        }
        ModelSource::Gguf(path) => {
            let g = crate::gguf::read_gguf(path)?;
            let config = ModelConfig::from_json(g.config, path)?;
            let tokenizer = Tokenizer::from_parts(
                &g.tokenizer_json,
                g.tokenizer_config,
                &g.generation_config,
                &config.eos_token_ids,
            )?;
            let tensors = g
                .tensors
                .into_iter()
                .map(|(n, t)| Ok((n, t.to_device(&opts.device)?)))
                .collect::<Result<_>>()?;
            (config, tensors, path.clone(), tokenizer)
        }
    };
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(Error::Config {
            path: origin,
            field: "vocab_size".into(),
            reason: format!(
                "the tokenizer has {} tokens, more than the embedding's {} rows",
                tokenizer.vocab_size(),
                config.vocab_size
            ),
        });
    }
    let (model, params) =
        CausalLm::from_tensors(config, tensors, &origin, opts.precision, opts.trainable)?;
    Ok(Pretrained {
        model,
        tokenizer,
        params,
        source,
    })
}
