//! The GPT-2 family (`GPT2LMHeadModel`: gpt2, distilgpt2, gpt2-medium/large/xl) inside the one
//! decoder of `model.rs`: learned absolute positions (`wpe`), LayerNorm with bias, the fused
//! `c_attn` projection, biases on every projection, an ungated GELU MLP ("gelu_new", the tanh
//! form), and a head tied to `wte`. Conv1D weights are stored `(in, out)`; they are transposed
//! to the `(out, in)` layout of `Linear` on load and back on save.
use crate::config::{token_ids, Arch, ModelConfig};
use crate::error::{Error, Result};
use crate::linear::Linear;
use crate::model::{Attention, CausalLm, Ffn, Layer, Mlp, Norm, Qkv};
use crate::weights::{push_linear, Taker};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// What GPT-2 adds to [`ModelConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    /// `activation_function == "gelu"` (erf form); otherwise the tanh form ("gelu_new",
    /// "gelu_pytorch_tanh").
    pub gelu_exact: bool,
}

fn num(raw: &serde_json::Value, key: &str) -> Option<usize> {
    raw.get(key).and_then(|v| v.as_u64()).map(|v| v as usize)
}

/// Reads a GPT-2 `config.json` (transformers' `GPT2Config` names and defaults).
pub fn config_from_json(raw: serde_json::Value, path: &Path) -> Result<ModelConfig> {
    let bad = |field: &str, reason: &str| Error::Config {
        path: path.to_path_buf(),
        field: field.into(),
        reason: reason.into(),
    };
    let flag = |k: &str| raw.get(k).and_then(|v| v.as_bool());
    if flag("scale_attn_by_inverse_layer_idx") == Some(true) {
        return Err(bad(
            "scale_attn_by_inverse_layer_idx",
            "true is unsupported",
        ));
    }
    if flag("scale_attn_weights") == Some(false) {
        return Err(bad("scale_attn_weights", "false is unsupported"));
    }
    if flag("add_cross_attention") == Some(true) {
        return Err(bad("add_cross_attention", "true is unsupported"));
    }
    let act = raw
        .get("activation_function")
        .and_then(|v| v.as_str())
        .unwrap_or("gelu_new");
    let gelu_exact = match act {
        "gelu_new" | "gelu_pytorch_tanh" => false,
        "gelu" => true,
        _ => {
            return Err(bad(
                "activation_function",
                &format!("`{act}` unsupported (gelu_new, gelu_pytorch_tanh, gelu)"),
            ))
        }
    };
    let h = num(&raw, "n_embd").unwrap_or(768);
    let heads = num(&raw, "n_head").unwrap_or(12);
    if heads == 0 || !h.is_multiple_of(heads) {
        return Err(bad(
            "n_head",
            &format!("{heads} does not divide n_embd {h}"),
        ));
    }
    Ok(ModelConfig {
        arch: Arch::Gpt2,
        vocab_size: num(&raw, "vocab_size").unwrap_or(50257),
        hidden_size: h,
        intermediate_size: num(&raw, "n_inner").unwrap_or(4 * h),
        num_layers: num(&raw, "n_layer").unwrap_or(12),
        num_heads: heads,
        num_kv_heads: heads,
        head_dim: h / heads,
        rms_norm_eps: raw
            .get("layer_norm_epsilon")
            .and_then(|v| v.as_f64())
            .unwrap_or(1e-5),
        rope_theta: 10000.0,
        rope_scaling: None,
        max_position_embeddings: num(&raw, "n_positions").unwrap_or(1024),
        tie_word_embeddings: flag("tie_word_embeddings").unwrap_or(true),
        qkv_bias: true,
        o_bias: true,
        qk_norm: false,
        bos_token_id: token_ids(&raw.get("bos_token_id").cloned())
            .first()
            .copied(),
        eos_token_ids: token_ids(&raw.get("eos_token_id").cloned()),
        pad_token_id: token_ids(&raw.get("pad_token_id").cloned())
            .first()
            .copied(),
        gpt2: Some(Gpt2Config { gelu_exact }),
        moe: None,
        sliding_window: None,
        raw,
    })
}

impl Gpt2Config {
    pub fn num_parameters(&self, c: &ModelConfig) -> usize {
        let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
        let layer = (h * 3 * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h) + 4 * h;
        let head = if c.tie_word_embeddings { 0 } else { v * h };
        v * h + c.max_position_embeddings * h + c.num_layers * layer + 2 * h + head
    }
}

/// The hub's original `gpt2` files name tensors without the `transformer.` prefix (they were
/// saved from `GPT2Model`) and carry the causal-mask buffers `attn.bias`/`attn.masked_bias`.
pub(crate) fn normalise_names(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .filter(|(n, _)| !n.ends_with(".attn.bias") && !n.ends_with(".attn.masked_bias"))
        .map(|(n, t)| {
            if n.starts_with("transformer.") || n == "lm_head.weight" {
                (n, t)
            } else {
                (format!("transformer.{n}"), t)
            }
        })
        .collect()
}

type Body = (Tensor, Option<Tensor>, Vec<Layer>, Norm);

/// A Conv1D `{name}.weight` `(in, out)` + `{name}.bias` as a `Linear` `(out, in)`.
fn conv1d(tk: &mut Taker<'_>, name: &str, inp: usize, out: usize) -> Result<Linear> {
    let w = tk.take_t(&format!("{name}.weight"), &[inp, out])?;
    let b = tk.take(&format!("{name}.bias"), &[out])?;
    Ok(Linear::new(w, Some(b)))
}

/// Embeddings, positions, blocks and `ln_f` from `transformer.*` tensors.
pub(crate) fn take_body(tk: &mut Taker<'_>, c: &ModelConfig) -> Result<Body> {
    let (v, h, i) = (c.vocab_size, c.hidden_size, c.intermediate_size);
    let wte = tk.take("transformer.wte.weight", &[v, h])?;
    let wpe = tk.take("transformer.wpe.weight", &[c.max_position_embeddings, h])?;
    let mut layers = vec![];
    for l in 0..c.num_layers {
        let p = format!("transformer.h.{l}");
        let attn = Attention {
            qkv: Qkv::Fused(conv1d(tk, &format!("{p}.attn.c_attn"), h, 3 * h)?),
            o: conv1d(tk, &format!("{p}.attn.c_proj"), h, h)?,
            q_norm: None,
            k_norm: None,
        };
        let mlp = Mlp {
            gate: None,
            up: conv1d(tk, &format!("{p}.mlp.c_fc"), h, i)?,
            down: conv1d(tk, &format!("{p}.mlp.c_proj"), i, h)?,
        };
        layers.push(Layer {
            attn,
            mlp: Ffn::Dense(mlp),
            input_norm: tk.norm(&format!("{p}.ln_1"), h, true)?,
            post_norm: tk.norm(&format!("{p}.ln_2"), h, true)?,
        });
    }
    let norm = tk.norm("transformer.ln_f", h, true)?;
    Ok((wte, Some(wpe), layers, norm))
}

fn push_conv1d(out: &mut Vec<(String, Tensor)>, name: &str, l: &Linear) -> Result<()> {
    let mut one = vec![];
    push_linear(&mut one, name, l)?;
    for (n, t) in one {
        let t = if n.ends_with(".weight") { t.t()? } else { t };
        out.push((n, t));
    }
    Ok(())
}

fn push_norm(out: &mut Vec<(String, Tensor)>, name: &str, n: &Norm) {
    out.push((format!("{name}.weight"), n.weight.clone()));
    if let Some(b) = &n.bias {
        out.push((format!("{name}.bias"), b.clone()));
    }
}

/// Every tensor under the names `GPT2LMHeadModel` saves, Conv1D weights back in `(in, out)`.
pub(crate) fn named_tensors(m: &CausalLm) -> Result<Vec<(String, Tensor)>> {
    let mut out = vec![("transformer.wte.weight".to_string(), m.embed.clone())];
    if let Some(wpe) = &m.wpe {
        out.push(("transformer.wpe.weight".into(), wpe.clone()));
    }
    for (l, layer) in m.layers.iter().enumerate() {
        let p = format!("transformer.h.{l}");
        push_norm(&mut out, &format!("{p}.ln_1"), &layer.input_norm);
        if let Qkv::Fused(c) = &layer.attn.qkv {
            push_conv1d(&mut out, &format!("{p}.attn.c_attn"), c)?;
        }
        push_conv1d(&mut out, &format!("{p}.attn.c_proj"), &layer.attn.o)?;
        push_norm(&mut out, &format!("{p}.ln_2"), &layer.post_norm);
        if let Ffn::Dense(mlp) = &layer.mlp {
            push_conv1d(&mut out, &format!("{p}.mlp.c_fc"), &mlp.up)?;
            push_conv1d(&mut out, &format!("{p}.mlp.c_proj"), &mlp.down)?;
        }
    }
    push_norm(&mut out, "transformer.ln_f", &m.norm);
    if let Some(h) = &m.lm_head {
        out.push(("lm_head.weight".into(), h.clone()));
    }
    Ok(out)
}

/// Stored shapes of every tensor (random initialisation).
pub(crate) fn param_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (v, h, i) = (c.vocab_size, c.hidden_size, c.intermediate_size);
    let mut s: Vec<(String, Vec<usize>)> = vec![
        ("transformer.wte.weight".into(), vec![v, h]),
        (
            "transformer.wpe.weight".into(),
            vec![c.max_position_embeddings, h],
        ),
    ];
    for l in 0..c.num_layers {
        let p = format!("transformer.h.{l}");
        for (n, inp, out) in [
            ("attn.c_attn", h, 3 * h),
            ("attn.c_proj", h, h),
            ("mlp.c_fc", h, i),
            ("mlp.c_proj", i, h),
        ] {
            s.push((format!("{p}.{n}.weight"), vec![inp, out]));
            s.push((format!("{p}.{n}.bias"), vec![out]));
        }
        for n in ["ln_1", "ln_2"] {
            s.push((format!("{p}.{n}.weight"), vec![h]));
            s.push((format!("{p}.{n}.bias"), vec![h]));
        }
    }
    s.push(("transformer.ln_f.weight".into(), vec![h]));
    s.push(("transformer.ln_f.bias".into(), vec![h]));
    if !c.tie_word_embeddings {
        s.push(("lm_head.weight".into(), vec![v, h]));
    }
    s
}
