//! The adapters a LoRA spec attaches, counted from a model's config alone (no weights): what
//! `rudder estimate` prices. The walk mirrors [`CausalLm::attach_lora`]'s projections (a test
//! holds the two to the same count on every fixture architecture).
//!
//! [`CausalLm::attach_lora`]: crate::CausalLm::attach_lora
use super::LoraSpec;
use crate::{ModelConfig, Result};

/// Every projection LoRA can adapt, layer by layer: `(short name, in features, out features)`.
/// MoE layers contribute their shared expert only (routed experts are never adapted).
pub fn adaptable_projections(c: &ModelConfig) -> Vec<(&'static str, usize, usize)> {
    let (h, q, kv) = (
        c.hidden_size,
        c.num_heads * c.head_dim,
        c.num_kv_heads * c.head_dim,
    );
    let mut out = vec![];
    for l in 0..c.num_layers {
        let mlp = match &c.moe {
            Some(m) if m.is_sparse(l) => m.shared_expert_size,
            _ => Some(c.intermediate_size),
        };
        if c.gpt2.is_some() {
            out.extend([("c_attn", h, 3 * h), ("c_proj", h, h)]);
            if let Some(i) = mlp {
                out.extend([("c_fc", h, i), ("c_proj", i, h)]);
            }
            continue;
        }
        out.extend([("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv)]);
        out.push(("o_proj", q, h));
        if let Some(i) = mlp {
            out.extend([("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]);
        }
    }
    out
}

/// Trainable adapter parameters of `spec` on a model of config `c`: `r × (in + out)` per
/// adapted projection.
pub fn adapter_params(c: &ModelConfig, spec: &LoraSpec) -> Result<u64> {
    let modules = spec.modules()?;
    Ok(adaptable_projections(c)
        .into_iter()
        .filter(|(name, _, _)| modules.contains(name))
        .map(|(_, i, o)| (spec.r * (i + o)) as u64)
        .sum())
}
