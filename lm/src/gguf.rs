//! Reading a GGUF Llama-family checkpoint (llama.cpp's format) into Hugging Face form: an HF
//! `config.json`, HF-named f32 tensors in HF layout, and an HF `tokenizer.json` rebuilt from the
//! GGUF metadata, so the rest of `lm` only ever deals with one (HF) representation.
//!
//! Supported architectures: `llama`, `qwen2`, `qwen3`. Supported tokenizer: `gpt2` (byte-level
//! BPE). Everything else is rejected with an error that names what was found.

mod config;
mod tensors;
mod tokenizer;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::Tensor;

pub use tensors::{permute_qk_rows, unpermute_qk_rows};

/// Everything needed to build an HF-style model directory from one GGUF file.
#[derive(Debug)]
pub struct GgufContents {
    /// HF `config.json`.
    pub config: serde_json::Value,
    /// HF tensor names, CPU, f32, HF shapes, Q/K rows in HF (un-permuted) order.
    pub tensors: Vec<(String, Tensor)>,
    /// HF `tokenizer.json`.
    pub tokenizer_json: serde_json::Value,
    /// HF `tokenizer_config.json`.
    pub tokenizer_config: serde_json::Value,
    /// HF `generation_config.json`.
    pub generation_config: serde_json::Value,
}

/// Errors from [`read_gguf`]; every message starts with the file path.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: cannot open GGUF file: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid GGUF file: {source}", path = .path.display())]
    Parse {
        path: PathBuf,
        // Boxed: candle's error is large and would bloat every `Result` here.
        #[source]
        source: Box<candle_core::Error>,
    },
    #[error("{path}: missing GGUF metadata key `{key}`", path = .path.display())]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: GGUF metadata key `{key}` should be {expected}, found {found}", path = .path.display())]
    BadValue {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: unsupported GGUF architecture `{arch}` (supported: llama, qwen2, qwen3)", path = .path.display())]
    UnsupportedArch { path: PathBuf, arch: String },
    #[error("{path}: unsupported GGUF tokenizer: {what}", path = .path.display())]
    UnsupportedTokenizer { path: PathBuf, what: String },
    #[error("{path}: missing tensor `{name}`", path = .path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: unexpected tensor `{name}` (not part of a dense {arch} model)", path = .path.display())]
    UnknownTensor {
        path: PathBuf,
        name: String,
        arch: String,
    },
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}", path = .path.display())]
    BadShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: cannot load tensor `{name}`: {source}", path = .path.display())]
    Tensor {
        path: PathBuf,
        name: String,
        // Boxed: candle's error is large and would bloat every `Result` here.
        #[source]
        source: Box<candle_core::Error>,
    },
}

/// Reads a GGUF file and converts it to HF form (see [`GgufContents`]).
pub fn read_gguf(path: &Path) -> Result<GgufContents, GgufError> {
    let file = File::open(path).map_err(|source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|source| GgufError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let meta = Meta {
        path,
        map: &content.metadata,
    };
    let params = config::ModelParams::from_meta(&meta, &content)?;
    let tok = tokenizer::TokenizerParts::from_meta(&meta)?;
    let tensors = tensors::load_all(&meta, &content, &mut reader, &params)?;
    Ok(GgufContents {
        config: params.to_hf_config(&tok),
        tensors,
        tokenizer_json: tok.tokenizer_json(&meta)?,
        tokenizer_config: tok.tokenizer_config(params.max_position_embeddings),
        generation_config: tok.generation_config(),
    })
}

/// Typed, path-aware access to the GGUF metadata map, so every lookup failure names the file and
/// the key.
pub(crate) struct Meta<'a> {
    path: &'a Path,
    map: &'a HashMap<String, Value>,
}

impl<'a> Meta<'a> {
    pub(crate) fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn get(&self, key: &str) -> Result<&'a Value, GgufError> {
        self.map.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path(),
            key: key.to_string(),
        })
    }

    fn bad(&self, key: &str, expected: &'static str, found: &Value) -> GgufError {
        let mut found = format!("{found:?}");
        // Arrays (vocabularies) can be huge; keep messages readable.
        found.truncate(80);
        GgufError::BadValue {
            path: self.path(),
            key: key.to_string(),
            expected,
            found,
        }
    }

    /// Any integer type: writers disagree on u32 vs u64 vs i32 for counts and ids.
    pub(crate) fn usize(&self, key: &str) -> Result<usize, GgufError> {
        let v = self.get(key)?;
        as_i128(v)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.bad(key, "a non-negative integer", v))
    }

    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>, GgufError> {
        self.map.get(key).map(|_| self.usize(key)).transpose()
    }

    pub(crate) fn f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.get(key)?;
        match v {
            Value::F32(x) => Ok(f64::from(*x)),
            Value::F64(x) => Ok(*x),
            other => as_i128(other)
                .map(|n| n as f64)
                .ok_or_else(|| self.bad(key, "a number", v)),
        }
    }

    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.map.get(key).map(|_| self.f64(key)).transpose()
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(key, "a bool", v)),
        }
    }

    pub(crate) fn str(&self, key: &str) -> Result<&'a str, GgufError> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            v => Err(self.bad(key, "a string", v)),
        }
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, GgufError> {
        self.map.get(key).map(|_| self.str(key)).transpose()
    }

    pub(crate) fn array(&self, key: &str) -> Result<&'a [Value], GgufError> {
        match self.get(key)? {
            Value::Array(items) => Ok(items),
            v => Err(self.bad(key, "an array", v)),
        }
    }

    pub(crate) fn string_array(&self, key: &str) -> Result<Vec<&'a str>, GgufError> {
        self.array(key)?
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(self.bad(key, "an array of strings", other)),
            })
            .collect()
    }

    pub(crate) fn int_array(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        self.array(key)?
            .iter()
            .map(|v| {
                as_i128(v)
                    .and_then(|n| i64::try_from(n).ok())
                    .ok_or_else(|| self.bad(key, "an array of integers", v))
            })
            .collect()
    }
}

fn as_i128(v: &Value) -> Option<i128> {
    Some(match v {
        Value::U8(x) => i128::from(*x),
        Value::I8(x) => i128::from(*x),
        Value::U16(x) => i128::from(*x),
        Value::I16(x) => i128::from(*x),
        Value::U32(x) => i128::from(*x),
        Value::I32(x) => i128::from(*x),
        Value::U64(x) => i128::from(*x),
        Value::I64(x) => i128::from(*x),
        _ => return None,
    })
}
