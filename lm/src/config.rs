//! `config.json` of a Hugging Face decoder (Llama family, GPT-2, Mixture-of-Experts), checked
//! before any tensor is touched.
use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The architectures the decoder implements. They differ only in a few switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    /// GPT-2 family (`GPT2LMHeadModel`: gpt2, distilgpt2, gpt2-medium/large/xl).
    Gpt2,
    /// Mistral with sparse MoE blocks (`MixtralForCausalLM`).
    Mixtral,
    Qwen2Moe,
    Qwen3Moe,
}

impl Arch {
    /// The `model_type` string transformers uses.
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gpt2 => "gpt2",
            Arch::Mixtral => "mixtral",
            Arch::Qwen2Moe => "qwen2_moe",
            Arch::Qwen3Moe => "qwen3_moe",
        }
    }

    /// The causal-LM class written to `architectures`.
    pub fn causal_lm_class(self) -> String {
        match self {
            Arch::Gpt2 => "GPT2LMHeadModel".into(),
            a => format!("{}ForCausalLM", a.class_prefix()),
        }
    }

    /// Class name prefix used in `architectures` (e.g. `LlamaForCausalLM`).
    pub fn class_prefix(self) -> &'static str {
        match self {
            Arch::Llama => "Llama",
            Arch::Mistral => "Mistral",
            Arch::Qwen2 => "Qwen2",
            Arch::Qwen3 => "Qwen3",
            Arch::Gpt2 => "GPT2",
            Arch::Mixtral => "Mixtral",
            Arch::Qwen2Moe => "Qwen2Moe",
            Arch::Qwen3Moe => "Qwen3Moe",
        }
    }
}

/// RoPE frequency scaling (`rope_scaling` in config.json).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1: frequencies between the low/high wavelength bands are smoothly rescaled.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// Position interpolation: every frequency divided by `factor`.
    Linear { factor: f64 },
    /// Dynamic NTK: plain frequencies up to `max_position_embeddings`, a larger base past it
    /// (which is not implemented: such positions are refused).
    Dynamic { factor: f64 },
    /// YaRN (Qwen's long-context setting): frequencies ramp from kept to divided by `factor`
    /// between the dimensions `beta_fast` and `beta_slow` rotations select, and cos/sin are
    /// scaled by `attention_factor`.
    Yarn {
        factor: f64,
        original_max_position_embeddings: f64,
        beta_fast: f64,
        beta_slow: f64,
        truncate: bool,
        attention_factor: f64,
    },
}

impl RopeScaling {
    /// What cos and sin are multiplied by (transformers' `attention_scaling`).
    pub fn attention_factor(&self) -> f64 {
        match self {
            RopeScaling::Yarn {
                attention_factor, ..
            } => *attention_factor,
            _ => 1.0,
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    rope_parameters: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
    pad_token_id: Option<serde_json::Value>,
}

/// A checked model configuration.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (Qwen2 always, Llama when `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama `attention_bias`).
    pub o_bias: bool,
    /// RMSNorm on each head of q and k before RoPE (Qwen3).
    pub qk_norm: bool,
    /// GPT-2 only: learned absolute positions, LayerNorm (eps in `rms_norm_eps`), fused
    /// `c_attn`, biases everywhere, an ungated GELU MLP. `None` for the Llama family.
    pub gpt2: Option<crate::gpt2::Gpt2Config>,
    /// Sparse Mixture-of-Experts blocks (Mixtral, Qwen2-MoE, Qwen3-MoE).
    pub moe: Option<crate::moe::MoeConfig>,
    /// The window of sliding-window attention when some layer has one (Mistral v0.1's 4096;
    /// Qwen's `use_sliding_window`). Not implemented: a position at or past it is an error
    /// (below it a sliding window changes nothing).
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// The config.json as read, kept so that saving preserves fields we do not model.
    pub raw: serde_json::Value,
}

fn field<T>(path: &Path, name: &str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| Error::Config {
        path: path.to_path_buf(),
        field: name.to_string(),
        reason: "missing".into(),
    })
}

fn bad(path: &Path, name: &str, reason: impl Into<String>) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        field: name.into(),
        reason: reason.into(),
    }
}

/// Token ids appear as a number, a list of numbers, or null.
pub(crate) fn token_ids(v: &Option<serde_json::Value>) -> Vec<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|x| vec![x as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64().map(|x| x as u32))
            .collect(),
        _ => vec![],
    }
}

impl ModelConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_json(raw, path)
    }

    /// Checks a config given as JSON; `path` names its origin in errors.
    pub fn from_json(raw: serde_json::Value, path: &Path) -> Result<Self> {
        let c: RawConfig = serde_json::from_value(raw.clone()).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            source: e,
        })?;
        let arch = detect_arch(&c, path)?;
        if arch == Arch::Gpt2 {
            return crate::gpt2::config_from_json(raw, path);
        }
        let hidden_size = field(path, "hidden_size", c.hidden_size)?;
        let num_heads = field(path, "num_attention_heads", c.num_attention_heads)?;
        let num_kv_heads = c.num_key_value_heads.unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(bad(
                path,
                "num_key_value_heads",
                format!("{num_kv_heads} does not divide num_attention_heads {num_heads}"),
            ));
        }
        let head_dim = c.head_dim.unwrap_or(hidden_size / num_heads);
        if !head_dim.is_multiple_of(2) || head_dim == 0 {
            return Err(bad(path, "head_dim", format!("{head_dim} must be even")));
        }
        let moe = crate::moe::MoeConfig::from_json(arch, &raw, path)?;
        if let Some(act) = &c.hidden_act {
            if act != "silu" && act != "swish" {
                return Err(bad(
                    path,
                    "hidden_act",
                    format!("`{act}` unsupported (silu)"),
                ));
            }
        }
        if c.mlp_bias == Some(true) {
            return Err(bad(path, "mlp_bias", "true is unsupported"));
        }
        let rope = c.rope_scaling.as_ref().or(c.rope_parameters.as_ref());
        let max_positions = c.max_position_embeddings.unwrap_or(4096);
        let rope_theta = c
            .rope_theta
            .or_else(|| {
                rope.and_then(|r| r.get("rope_theta"))
                    .and_then(|v| v.as_f64())
            })
            .unwrap_or(10000.0);
        let attention_bias = c.attention_bias.unwrap_or(false);
        Ok(ModelConfig {
            arch,
            vocab_size: field(path, "vocab_size", c.vocab_size)?,
            hidden_size,
            intermediate_size: field(path, "intermediate_size", c.intermediate_size)?,
            num_layers: field(path, "num_hidden_layers", c.num_hidden_layers)?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: c.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling: parse_rope_scaling(rope, &raw, max_positions, path)?,
            max_position_embeddings: max_positions,
            tie_word_embeddings: c.tie_word_embeddings.unwrap_or(false),
            qkv_bias: match arch {
                Arch::Qwen2 => true,
                // Qwen2-MoE's own switch, default on.
                Arch::Qwen2Moe => raw
                    .get("qkv_bias")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true),
                _ => attention_bias,
            },
            o_bias: !matches!(arch, Arch::Qwen2 | Arch::Qwen2Moe) && attention_bias,
            qk_norm: matches!(arch, Arch::Qwen3 | Arch::Qwen3Moe),
            gpt2: None,
            moe,
            sliding_window: sliding_window(arch, &raw),
            bos_token_id: token_ids(&c.bos_token_id).first().copied(),
            eos_token_ids: token_ids(&c.eos_token_id),
            pad_token_id: token_ids(&c.pad_token_id).first().copied(),
            raw,
        })
    }

    /// Positions the model cannot attend from correctly are an error, never a silent mistake:
    /// GPT-2 has no embedding past `n_positions`, and sliding-window attention is not
    /// implemented (a window only changes anything once a position reaches it).
    pub fn check_positions(&self, positions: &[u32]) -> Result<()> {
        let Some(&last) = positions.iter().max() else {
            return Ok(());
        };
        let max = self.max_position_embeddings;
        let mut limits = vec![];
        if self.gpt2.is_some() {
            limits.push((max, "n_positions (GPT-2's learned positions)"));
        }
        if let Some(w) = self.sliding_window {
            limits.push((
                w,
                "sliding_window (sliding-window attention is not implemented)",
            ));
        }
        if matches!(self.rope_scaling, Some(RopeScaling::Dynamic { .. })) {
            let why = "max_position_embeddings (dynamic RoPE scaling past it is not implemented)";
            limits.push((max, why));
        }
        let Some((limit, why)) = limits.into_iter().min_by_key(|l| l.0) else {
            return Ok(());
        };
        if last as usize >= limit {
            return Err(Error::Invalid(format!(
                "a sequence reaches {} tokens, past the model's {why} of {limit}: use a shorter \
                 --max-seq-len / --max-new-tokens",
                last as usize + 1
            )));
        }
        Ok(())
    }

    /// Number of parameters of the causal LM (embeddings counted once when tied).
    pub fn num_parameters(&self) -> usize {
        if let Some(g) = &self.gpt2 {
            return g.num_parameters(self);
        }
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (q, kv) = (
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
        );
        let mut attn = h * q + 2 * h * kv + q * h;
        if self.qkv_bias {
            attn += q + 2 * kv;
        }
        if self.o_bias {
            attn += h;
        }
        if self.qk_norm {
            attn += 2 * self.head_dim;
        }
        let layers: usize = (0..self.num_layers)
            .map(|l| {
                let ffn = match self.moe.as_ref().filter(|m| m.is_sparse(l)) {
                    Some(m) => m.num_parameters(h),
                    None => 3 * h * i,
                };
                attn + ffn + 2 * h
            })
            .sum();
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + layers + h + head
    }
}

fn detect_arch(c: &RawConfig, path: &Path) -> Result<Arch> {
    let name = c
        .model_type
        .clone()
        .or_else(|| c.architectures.as_ref().and_then(|a| a.first().cloned()))
        .ok_or_else(|| bad(path, "model_type", "missing (and no `architectures`)"))?;
    let lower = name.to_ascii_lowercase();
    let arch = match lower.as_str() {
        "llama" => Arch::Llama,
        "mistral" => Arch::Mistral,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        "gpt2" | "gpt2lmheadmodel" => Arch::Gpt2,
        "mixtral" | "mixtralforcausallm" => Arch::Mixtral,
        "qwen2_moe" | "qwen2moeforcausallm" => Arch::Qwen2Moe,
        "qwen3_moe" | "qwen3moeforcausallm" => Arch::Qwen3Moe,
        s if s.starts_with("llama") => Arch::Llama,
        s if s.starts_with("mistral") => Arch::Mistral,
        s if s.starts_with("qwen3") && !s.contains("moe") => Arch::Qwen3,
        s if s.starts_with("qwen2") && !s.contains("moe") && !s.contains("vl") => Arch::Qwen2,
        _ => return Err(Error::UnsupportedArchitecture(name)),
    };
    Ok(arch)
}

fn parse_rope_scaling(
    v: Option<&serde_json::Value>,
    raw: &serde_json::Value,
    max_positions: usize,
    path: &Path,
) -> Result<Option<RopeScaling>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        v.get(k).and_then(|x| x.as_f64()).ok_or_else(|| {
            bad(
                path,
                &format!("rope_scaling.{k}"),
                "missing or not a number",
            )
        })
    };
    match kind {
        "default" => Ok(None),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        })),
        "linear" => Ok(Some(RopeScaling::Linear {
            factor: num("factor")?,
        })),
        "yarn" => Ok(Some(yarn(v, raw, max_positions, num("factor")?))),
        "dynamic" => Ok(Some(RopeScaling::Dynamic {
            factor: num("factor")?,
        })),
        other => Err(bad(
            path,
            "rope_scaling.rope_type",
            format!("`{other}` unsupported (llama3, linear, yarn, dynamic)"),
        )),
    }
}

/// YaRN's parameters with transformers 5.24's defaults: the original context from the rope dict,
/// else a top-level `original_max_position_embeddings` (Phi-3 style), else
/// `max_position_embeddings`; betas 32 and 1; truncation on; the attention factor given, or
/// `0.1 ln(factor) + 1` (a ratio of two such terms with `mscale` and `mscale_all_dim`).
fn yarn(
    v: &serde_json::Value,
    raw: &serde_json::Value,
    max_positions: usize,
    factor: f64,
) -> RopeScaling {
    let get = |k: &str| v.get(k).and_then(|x| x.as_f64());
    let original = get("original_max_position_embeddings")
        .or_else(|| {
            raw.get("original_max_position_embeddings")
                .and_then(|x| x.as_f64())
        })
        .unwrap_or(max_positions as f64);
    let mscale = |scale: f64, m: f64| {
        if scale <= 1.0 {
            1.0
        } else {
            0.1 * m * scale.ln() + 1.0
        }
    };
    let attention_factor = get("attention_factor").unwrap_or_else(|| {
        match (
            get("mscale").filter(|m| *m != 0.0),
            get("mscale_all_dim").filter(|m| *m != 0.0),
        ) {
            (Some(m), Some(all)) => mscale(factor, m) / mscale(factor, all),
            _ => mscale(factor, 1.0),
        }
    });
    RopeScaling::Yarn {
        factor,
        original_max_position_embeddings: original,
        // `or 32` / `or 1` in transformers: a 0 also takes the default.
        beta_fast: get("beta_fast").filter(|b| *b != 0.0).unwrap_or(32.0),
        beta_slow: get("beta_slow").filter(|b| *b != 0.0).unwrap_or(1.0),
        truncate: v.get("truncate").and_then(|t| t.as_bool()).unwrap_or(true),
        attention_factor,
    }
}

/// The attention window of the sliding layers, as transformers 5.24 decides which layers slide
/// (its defaults where a key is absent: window 4096 but for Mixtral, `max_window_layers` 28).
/// Mistral/Mixtral slide whenever a window is set; the Qwen families only with
/// `use_sliding_window`, on the layers `layer_types` names or their default rule.
fn sliding_window(arch: Arch, raw: &serde_json::Value) -> Option<usize> {
    let window = match raw.get("sliding_window") {
        None if arch == Arch::Mixtral => return None,
        None => 4096,
        Some(v) => v.as_u64()? as usize,
    };
    let num = |k: &str, default: u64| raw.get(k).and_then(|v| v.as_u64()).unwrap_or(default);
    let on = raw.get("use_sliding_window").and_then(|v| v.as_bool()) == Some(true);
    let typed = raw
        .get("layer_types")
        .and_then(|v| v.as_array())
        .map(|types| types.iter().any(|t| t == "sliding_attention"));
    let (layers, from) = (num("num_hidden_layers", 0), num("max_window_layers", 28));
    let slides = match arch {
        Arch::Mistral | Arch::Mixtral => true,
        Arch::Qwen2 | Arch::Qwen3 => on && typed.unwrap_or(from < layers),
        // Qwen2-MoE's rule: every other layer below max_window_layers.
        Arch::Qwen2Moe => on && typed.unwrap_or(from > 0),
        Arch::Qwen3Moe => on,
        Arch::Llama | Arch::Gpt2 => false,
    };
    slides.then_some(window)
}

/// Where a config came from, for error messages.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}
