//! GGUF `{arch}.*` hyper-parameters → HF `config.json`.

use candle_core::quantized::gguf_file::Content;
use serde_json::{json, Value as Json};

use super::tokenizer::TokenizerParts;
use super::{GgufError, Meta};

/// The GGUF architectures we can map onto an HF decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    fn parse(meta: &Meta<'_>) -> Result<Self, GgufError> {
        match meta.str("general.architecture")? {
            "llama" => Ok(Self::Llama),
            "qwen2" => Ok(Self::Qwen2),
            "qwen3" => Ok(Self::Qwen3),
            other => Err(GgufError::UnsupportedArch {
                path: meta.path(),
                arch: other.to_string(),
            }),
        }
    }

    pub(crate) fn gguf_name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }

    fn hf_names(self) -> (&'static str, &'static str) {
        match self {
            Self::Llama => ("llama", "LlamaForCausalLM"),
            Self::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
            Self::Qwen3 => ("qwen3", "Qwen3ForCausalLM"),
        }
    }

    /// llama.cpp's convert script permutes Q/K rows only for `LlamaModel` subclasses (its rope
    /// kernel is interleaved); Qwen2/Qwen3 use NEOX-style rope and are stored as in HF.
    pub(crate) fn qk_permuted(self) -> bool {
        self == Self::Llama
    }

    /// Qwen2 is the only one with q/k/v biases.
    pub(crate) fn qkv_bias(self) -> bool {
        self == Self::Qwen2
    }

    /// Qwen3 has per-head RMSNorm on Q and K.
    pub(crate) fn qk_norm(self) -> bool {
        self == Self::Qwen3
    }
}

/// The hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone)]
pub(crate) struct ModelParams {
    pub arch: Arch,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Json>,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    /// No `output.weight` in the file: the LM head reuses the embedding.
    pub tie_word_embeddings: bool,
}

impl ModelParams {
    pub(crate) fn from_meta(meta: &Meta<'_>, content: &Content) -> Result<Self, GgufError> {
        let arch = Arch::parse(meta)?;
        let key = |k: &str| format!("{}.{k}", arch.gguf_name());
        let hidden_size = meta.usize(&key("embedding_length"))?;
        let num_attention_heads = meta.usize(&key("attention.head_count"))?;
        if num_attention_heads == 0 {
            return Err(GgufError::BadValue {
                path: meta.path(),
                key: key("attention.head_count"),
                expected: "a positive integer",
                found: "0".into(),
            });
        }
        // Missing head_count_kv means plain multi-head attention (llama.cpp's default too).
        let num_key_value_heads = meta
            .opt_usize(&key("attention.head_count_kv"))?
            .unwrap_or(num_attention_heads);
        let head_dim = match meta.opt_usize(&key("attention.key_length"))? {
            Some(d) => d,
            None => hidden_size / num_attention_heads,
        };
        Ok(Self {
            arch,
            hidden_size,
            intermediate_size: meta.usize(&key("feed_forward_length"))?,
            num_hidden_layers: meta.usize(&key("block_count"))?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: meta.f64(&key("attention.layer_norm_rms_epsilon"))?,
            rope_theta: meta.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_scaling: rope_scaling(meta, &key)?,
            max_position_embeddings: meta.usize(&key("context_length"))?,
            vocab_size: vocab_size(meta, &key)?,
            tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        })
    }

    pub(crate) fn to_hf_config(&self, tok: &TokenizerParts) -> Json {
        let (model_type, class) = self.arch.hf_names();
        let mut cfg = json!({
            "architectures": [class],
            "model_type": model_type,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.arch.qkv_bias(),
            "mlp_bias": false,
            "bos_token_id": tok.bos_id,
            "eos_token_id": tok.eos_id,
            "pad_token_id": tok.pad_id,
            "torch_dtype": "float32",
        });
        if self.arch == Arch::Qwen2 {
            // Qwen2's HF config enables sliding windows only when asked; GGUF never asks.
            cfg["use_sliding_window"] = json!(false);
        }
        cfg
    }
}

/// `{arch}.vocab_size` is optional in GGUF; the token list is authoritative when it is absent.
fn vocab_size(meta: &Meta<'_>, key: &dyn Fn(&str) -> String) -> Result<usize, GgufError> {
    match meta.opt_usize(&key("vocab_size"))? {
        Some(n) => Ok(n),
        None => Ok(meta.array("tokenizer.ggml.tokens")?.len()),
    }
}

/// Linear / YaRN scaling is stored as metadata. Llama-3.1-style scaling is stored as a
/// `rope_freqs.weight` tensor instead and has no HF-config equivalent here (see tensors.rs).
fn rope_scaling(meta: &Meta<'_>, key: &dyn Fn(&str) -> String) -> Result<Option<Json>, GgufError> {
    let kind = match meta.opt_str(&key("rope.scaling.type"))? {
        None | Some("none") => return Ok(None),
        Some(kind) => kind,
    };
    let Some(factor) = meta.opt_f64(&key("rope.scaling.factor"))? else {
        return Ok(None);
    };
    let mut scaling = json!({ "type": kind, "rope_type": kind, "factor": factor });
    if let Some(orig) = meta.opt_usize(&key("rope.scaling.original_context_length"))? {
        scaling["original_max_position_embeddings"] = json!(orig);
    }
    Ok(Some(scaling))
}
