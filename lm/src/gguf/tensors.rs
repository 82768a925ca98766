//! GGUF tensors → HF-named, HF-shaped f32 CPU tensors.
//!
//! candle's GGUF reader already reverses GGUF's (ggml, fastest-dim-first) dims, so shapes come
//! out in HF/numpy order; we still check every shape against the config.

use std::collections::BTreeSet;
use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};

use super::config::ModelParams;
use super::{GgufError, Meta};

/// Where one GGUF tensor goes in the HF checkpoint.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    hf_name: String,
    shape: Vec<usize>,
    /// `Some(n_head)`: rows were permuted by llama.cpp for `n_head` heads; undo it.
    unpermute_heads: Option<usize>,
    /// Sort key so the output order is embed, layer 0..n, final norm, lm_head.
    order: (usize, usize),
}

/// llama.cpp's `LlamaModel.permute`: within each head, move the rotary pairs (`x[i]`,
/// `x[i + d/2]`) next to each other, because ggml's llama rope rotates adjacent pairs while HF
/// rotates the two halves. Works on weights `[rows, cols]` and biases `[rows]`.
pub fn permute_qk_rows(t: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    regroup_rows(t, n_head, true)
}

/// Exact inverse of [`permute_qk_rows`] (transformers' `reverse_permute_weights`).
pub fn unpermute_qk_rows(t: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    regroup_rows(t, n_head, false)
}

fn regroup_rows(t: &Tensor, n_head: usize, forward: bool) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims.first().copied().unwrap_or(0);
    if n_head == 0 || rows % (2 * n_head) != 0 {
        candle_core::bail!("cannot split {rows} rows into {n_head} heads of rotary pairs");
    }
    let cols: usize = dims[1..].iter().product();
    let half = rows / n_head / 2;
    // Forward views each head as [2, half] and makes it [half, 2]; the inverse does the opposite.
    let (a, b) = if forward { (2, half) } else { (half, 2) };
    t.reshape((n_head, a, b, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// Loads, dequantizes, renames, checks and un-permutes every tensor of the file.
pub(crate) fn load_all<R: Read + Seek>(
    meta: &Meta<'_>,
    content: &Content,
    reader: &mut R,
    p: &ModelParams,
) -> Result<Vec<(String, Tensor)>, GgufError> {
    let mut targets = Vec::new();
    for name in content.tensor_infos.keys() {
        if let Some(target) = target_for(meta, name, p)? {
            targets.push((name.as_str(), target));
        }
    }
    check_complete(meta, p, &targets)?;
    targets.sort_by(|a, b| (a.1.order, &a.1.hf_name).cmp(&(b.1.order, &b.1.hf_name)));
    targets
        .into_iter()
        .map(|(name, target)| load_one(meta, content, reader, name, target))
        .collect()
}

fn load_one<R: Read + Seek>(
    meta: &Meta<'_>,
    content: &Content,
    reader: &mut R,
    name: &str,
    target: Target,
) -> Result<(String, Tensor), GgufError> {
    let found = content
        .tensor_infos
        .get(name)
        .map(|info| info.shape.dims().to_vec())
        .unwrap_or_default();
    // Check before reading so a corrupt header cannot make us dequantize something huge.
    if found != target.shape {
        return Err(GgufError::BadShape {
            path: meta.path(),
            name: name.to_string(),
            expected: target.shape,
            found,
        });
    }
    let err = |source| GgufError::Tensor {
        path: meta.path(),
        name: name.to_string(),
        source: Box::new(source),
    };
    let cpu = Device::Cpu;
    let mut t = content
        .tensor(reader, name, &cpu)
        .and_then(|q| q.dequantize(&cpu))
        .and_then(|t| t.to_dtype(DType::F32))
        .map_err(err)?;
    if let Some(n_head) = target.unpermute_heads {
        t = unpermute_qk_rows(&t, n_head).map_err(err)?;
    }
    Ok((target.hf_name, t))
}

/// Maps a GGUF tensor name to its HF target; `None` for tensors HF has no place for.
fn target_for(meta: &Meta<'_>, name: &str, p: &ModelParams) -> Result<Option<Target>, GgufError> {
    let (h, v) = (p.hidden_size, p.vocab_size);
    let global = |hf: &str, shape: Vec<usize>, rank| Target {
        hf_name: hf.to_string(),
        shape,
        unpermute_heads: None,
        order: (rank, 0),
    };
    let target = match name {
        "token_embd.weight" => global("model.embed_tokens.weight", vec![v, h], 0),
        "output_norm.weight" => global("model.norm.weight", vec![h], 2),
        "output.weight" => global("lm_head.weight", vec![v, h], 3),
        // Llama-3.1 rope frequency factors: derived data with no HF tensor (HF recomputes them
        // from config.rope_scaling), so it is dropped.
        "rope_freqs.weight" => return Ok(None),
        _ => layer_target(name, p).ok_or_else(|| GgufError::UnknownTensor {
            path: meta.path(),
            name: name.to_string(),
            arch: p.arch.gguf_name().to_string(),
        })?,
    };
    Ok(Some(target))
}

fn layer_target(name: &str, p: &ModelParams) -> Option<Target> {
    let rest = name.strip_prefix("blk.")?;
    let (idx, suffix) = rest.split_once('.')?;
    let layer: usize = idx.parse().ok()?;
    if layer >= p.num_hidden_layers {
        return None;
    }
    let (h, i, hd) = (p.hidden_size, p.intermediate_size, p.head_dim);
    let (q, kv) = (p.num_attention_heads * hd, p.num_key_value_heads * hd);
    let perm = p.arch.qk_permuted();
    let (q_heads, k_heads) = (
        perm.then_some(p.num_attention_heads),
        perm.then_some(p.num_key_value_heads),
    );
    let (hf, shape, heads): (&str, Vec<usize>, Option<usize>) = match suffix {
        "attn_norm.weight" => ("input_layernorm.weight", vec![h], None),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", vec![h], None),
        "attn_q.weight" => ("self_attn.q_proj.weight", vec![q, h], q_heads),
        "attn_k.weight" => ("self_attn.k_proj.weight", vec![kv, h], k_heads),
        "attn_v.weight" => ("self_attn.v_proj.weight", vec![kv, h], None),
        "attn_output.weight" => ("self_attn.o_proj.weight", vec![h, q], None),
        "attn_q.bias" => ("self_attn.q_proj.bias", vec![q], q_heads),
        "attn_k.bias" => ("self_attn.k_proj.bias", vec![kv], k_heads),
        "attn_v.bias" => ("self_attn.v_proj.bias", vec![kv], None),
        "attn_q_norm.weight" => ("self_attn.q_norm.weight", vec![hd], None),
        "attn_k_norm.weight" => ("self_attn.k_norm.weight", vec![hd], None),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", vec![i, h], None),
        "ffn_up.weight" => ("mlp.up_proj.weight", vec![i, h], None),
        "ffn_down.weight" => ("mlp.down_proj.weight", vec![h, i], None),
        _ => return None,
    };
    Some(Target {
        hf_name: format!("model.layers.{layer}.{hf}"),
        shape,
        unpermute_heads: heads,
        order: (1, layer),
    })
}

/// Every tensor the architecture needs must be present (biases only where the arch has them).
fn check_complete(
    meta: &Meta<'_>,
    p: &ModelParams,
    targets: &[(&str, Target)],
) -> Result<(), GgufError> {
    let have: BTreeSet<&str> = targets.iter().map(|(n, _)| *n).collect();
    let mut need = vec!["token_embd.weight".to_string(), "output_norm.weight".into()];
    let mut per_layer = vec![
        "attn_norm.weight",
        "ffn_norm.weight",
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_output.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    ];
    if p.arch.qkv_bias() {
        per_layer.extend(["attn_q.bias", "attn_k.bias", "attn_v.bias"]);
    }
    if p.arch.qk_norm() {
        per_layer.extend(["attn_q_norm.weight", "attn_k_norm.weight"]);
    }
    for layer in 0..p.num_hidden_layers {
        need.extend(per_layer.iter().map(|s| format!("blk.{layer}.{s}")));
    }
    match need.into_iter().find(|n| !have.contains(n.as_str())) {
        Some(name) => Err(GgufError::MissingTensor {
            path: meta.path(),
            name,
        }),
        None => Ok(()),
    }
}
