//! Sparse Mixture-of-Experts feed-forward blocks as transformers 5.24 computes them: Mixtral
//! (`block_sparse_moe`, top-k probabilities always renormalised), Qwen2-MoE (optional
//! renormalisation, a shared expert scaled by a sigmoid gate, dense layers in `mlp_only_layers`)
//! and Qwen3-MoE; plus the router load-balancing loss (`load_balancing_loss_func`).
//!
//! Only the selected experts run: the tokens routed to an expert are gathered with
//! `index_select`, pass through it, and are scattered back with `index_add` (both have a
//! backward), so a top-1 model with E experts costs about one dense MLP per token, not E.
use crate::config::Arch;
use crate::error::{Error, Result};
use crate::gemv::param;
use crate::linear::Adapters;
use crate::model::Mlp;
use candle_core::{DType, Device, Tensor};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The MoE part of `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    pub num_experts: usize,
    /// `num_experts_per_tok`.
    pub top_k: usize,
    /// Intermediate size of each routed expert.
    pub expert_size: usize,
    /// Renormalise the top-k probabilities to sum to 1 (Mixtral always; Qwen `norm_topk_prob`).
    pub norm_topk_prob: bool,
    /// Qwen2-MoE's shared expert (with its sigmoid gate), when the config has one.
    pub shared_expert_size: Option<usize>,
    pub router_aux_loss_coef: f64,
    /// Layer `l` is sparse when `(l + 1) % sparse_step == 0` and it is not in `mlp_only_layers`.
    pub sparse_step: usize,
    pub mlp_only_layers: Vec<usize>,
    /// Mixtral names its blocks `block_sparse_moe.experts.{j}.w1/w2/w3`; Qwen `mlp.experts.{j}.*_proj`.
    pub mixtral_names: bool,
}

fn num(raw: &serde_json::Value, key: &str) -> Option<usize> {
    raw.get(key).and_then(|v| v.as_u64()).map(|v| v as usize)
}

impl MoeConfig {
    /// `None` for dense architectures; the defaults are those of the transformers config classes.
    pub fn from_json(arch: Arch, raw: &serde_json::Value, path: &Path) -> Result<Option<Self>> {
        let bad = |field: &str, reason: String| Error::Config {
            path: path.to_path_buf(),
            field: field.into(),
            reason,
        };
        let (experts, top_k, size, norm, shared, mixtral) = match arch {
            Arch::Mixtral => (
                num(raw, "num_local_experts").unwrap_or(8),
                num(raw, "num_experts_per_tok").unwrap_or(2),
                num(raw, "intermediate_size").unwrap_or(14336),
                true,
                None,
                true,
            ),
            Arch::Qwen2Moe | Arch::Qwen3Moe => {
                let qwen2 = arch == Arch::Qwen2Moe;
                let experts = num(raw, "num_experts").or_else(|| num(raw, "num_local_experts"));
                let shared = num(raw, "shared_expert_intermediate_size")
                    .or(qwen2.then_some(5632))
                    .filter(|&s| s > 0);
                (
                    experts.unwrap_or(if qwen2 { 60 } else { 128 }),
                    num(raw, "num_experts_per_tok").unwrap_or(if qwen2 { 4 } else { 8 }),
                    num(raw, "moe_intermediate_size").unwrap_or(if qwen2 { 1408 } else { 768 }),
                    raw.get("norm_topk_prob")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false),
                    shared,
                    false,
                )
            }
            _ => return Ok(None),
        };
        if top_k == 0 || top_k > experts {
            return Err(bad(
                "num_experts_per_tok",
                format!("{top_k} must be in 1..={experts} (the number of experts)"),
            ));
        }
        let mlp_only_layers = match raw.get("mlp_only_layers") {
            None | Some(serde_json::Value::Null) => vec![],
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                bad(
                    "mlp_only_layers",
                    format!("not a list of layer indices: {e}"),
                )
            })?,
        };
        Ok(Some(MoeConfig {
            num_experts: experts,
            top_k,
            expert_size: size,
            norm_topk_prob: norm,
            shared_expert_size: shared,
            router_aux_loss_coef: raw
                .get("router_aux_loss_coef")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.001),
            sparse_step: num(raw, "decoder_sparse_step").unwrap_or(1).max(1),
            mlp_only_layers,
            mixtral_names: mixtral,
        }))
    }

    /// Whether layer `l` has a sparse block (else a dense MLP of `intermediate_size`).
    pub fn is_sparse(&self, l: usize) -> bool {
        !self.mlp_only_layers.contains(&l) && (l + 1).is_multiple_of(self.sparse_step)
    }

    /// Parameters of one sparse block with hidden size `h`.
    pub fn num_parameters(&self, h: usize) -> usize {
        let shared = self.shared_expert_size.map_or(0, |s| 3 * h * s + h);
        self.num_experts * (h + 3 * h * self.expert_size) + shared
    }

    /// Transformers' name of layer `l`'s block (`model.layers.0.block_sparse_moe`).
    pub fn prefix(&self, l: usize) -> String {
        let block = if self.mixtral_names {
            "block_sparse_moe"
        } else {
            "mlp"
        };
        format!("model.layers.{l}.{block}")
    }

    /// Names of an expert's gate, up and down projections.
    pub fn expert_names(&self) -> [&'static str; 3] {
        if self.mixtral_names {
            ["w1", "w3", "w2"]
        } else {
            ["gate_proj", "up_proj", "down_proj"]
        }
    }
}

/// One sparse block: router, experts (gated SiLU MLPs) and the optional shared expert.
#[derive(Debug, Clone)]
pub(crate) struct Moe {
    /// `(E, H)`.
    pub router: Tensor,
    pub experts: Vec<Mlp>,
    /// Shared expert and its gate weight `(1, H)`.
    pub shared: Option<(Mlp, Tensor)>,
    pub top_k: usize,
    pub norm_topk_prob: bool,
}

/// Per token: the chosen experts, most probable first (`torch.topk` order).
fn top_k_rows(probs: &[Vec<f32>], k: usize) -> Vec<Vec<u32>> {
    probs
        .iter()
        .map(|p| {
            let mut idx: Vec<u32> = (0..p.len() as u32).collect();
            // Stable sort: on an exact tie the lower index wins.
            idx.sort_by(|&a, &b| p[b as usize].total_cmp(&p[a as usize]));
            idx.truncate(k);
            idx
        })
        .collect()
}

impl Moe {
    /// `x`: (B, T, H) -> ((B, T, H), router logits (B*T, E)).
    pub fn forward(&self, x: &Tensor, adapters: Adapters) -> Result<(Tensor, Tensor)> {
        let (b, t, h) = x.dims3()?;
        let n = b * t;
        let xf = x.reshape((n, h))?;
        // (N, H) x (H, E): router logits in the activation dtype, softmax in f32 (as transformers).
        let logits = crate::linear::matmul_t(&xf, &param(&self.router).to_dtype(x.dtype())?)?;
        let probs = crate::ops::softmax_last(&logits.to_dtype(DType::F32)?)?;
        let chosen = top_k_rows(&probs.detach().to_vec2::<f32>()?, self.top_k);
        let dev = x.device();
        let k = self.top_k;
        let idx: Vec<u32> = chosen.concat();
        // (N, k) routing weights, differentiable through the softmax.
        let mut w = probs.gather(&Tensor::from_vec(idx.clone(), (n, k), dev)?, 1)?;
        if self.norm_topk_prob {
            w = w.broadcast_div(&w.sum_keepdim(1)?)?;
        }
        let w = w.to_dtype(x.dtype())?.flatten_all()?;
        let mut out = Tensor::zeros((n, h), x.dtype(), dev)?;
        for (e, expert) in self.experts.iter().enumerate() {
            // Tokens routed to expert e, and their slot in the flattened (N * k) weights.
            let (tokens, slots): (Vec<u32>, Vec<u32>) = (0..n)
                .flat_map(|i| (0..k).map(move |j| (i, j)))
                .filter(|&(i, j)| idx[i * k + j] as usize == e)
                .map(|(i, j)| (i as u32, (i * k + j) as u32))
                .unzip();
            if tokens.is_empty() {
                continue;
            }
            let tokens = Tensor::new(tokens.as_slice(), dev)?;
            let slots = Tensor::new(slots.as_slice(), dev)?;
            // (n_e, H) -> expert -> scaled by its weight -> added back at the tokens' rows.
            let y = expert.forward_gated(&xf.index_select(&tokens, 0)?, adapters)?;
            let y = y.broadcast_mul(&w.index_select(&slots, 0)?.unsqueeze(1)?)?;
            out = out.index_add(&tokens, &y, 0)?;
        }
        if let Some((mlp, gate)) = &self.shared {
            let g = crate::linear::matmul_t(&xf, &param(gate).to_dtype(x.dtype())?)?;
            // sigmoid from primitives (candle-nn's fused sigmoid is not used on the training path).
            let g = (g.neg()?.exp()? + 1.0)?.recip()?;
            out = (out + mlp.forward_gated(&xf, adapters)?.broadcast_mul(&g)?)?;
        }
        Ok((out.reshape((b, t, h))?, logits))
    }
}

/// Router logits of the latest forward pass, one `(B*T, E)` tensor per sparse layer, kept for
/// the load-balancing loss. A clone of the model gets its own, empty log.
#[derive(Debug, Default)]
pub(crate) struct RouterLog(pub Arc<Mutex<Vec<Tensor>>>);

impl Clone for RouterLog {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Transformers' `load_balancing_loss_func` (Switch Transformer eq. 4-6) over the router logits
/// of every sparse layer: `E * Σ_e f_e P_e`, where `f_e` is the fraction of top-k assignments
/// that went to expert e and `P_e` its mean router probability, both over the tokens with
/// `mask == 1` of all layers. Gradients flow through `P` only. Also returns the per-expert
/// assignment counts (summed over layers) so training can log routing collapse.
pub fn load_balancing_loss(
    router_logits: &[Tensor],
    num_experts: usize,
    top_k: usize,
    mask: Option<&[u32]>,
) -> Result<(Tensor, Vec<f32>)> {
    let Some(first) = router_logits.first() else {
        return Err(Error::Invalid(
            "no router logits: the model has no sparse layer".into(),
        ));
    };
    let dev: Device = first.device().clone();
    let n = first.dim(0)?;
    let m: Vec<f32> = match mask {
        Some(m) => m.iter().map(|&v| f32::from(u8::from(v != 0))).collect(),
        None => vec![1.0; n],
    };
    if m.len() != n {
        return Err(Error::Invalid(format!(
            "router mask has {} entries for {n} tokens",
            m.len()
        )));
    }
    let mask_t = Tensor::from_vec(m.clone(), (n, 1), &dev)?;
    let mut counts = vec![0f32; num_experts];
    let mut prob_sum = Tensor::zeros(num_experts, DType::F32, &dev)?;
    for layer in router_logits {
        let probs = crate::ops::softmax_last(&layer.to_dtype(DType::F32)?)?;
        for (i, row) in top_k_rows(&probs.detach().to_vec2::<f32>()?, top_k)
            .iter()
            .enumerate()
        {
            for &e in row {
                counts[e as usize] += m[i];
            }
        }
        prob_sum = (prob_sum + probs.broadcast_mul(&mask_t)?.sum(0)?)?;
    }
    let rows = m.iter().sum::<f32>() * router_logits.len() as f32;
    let f = Tensor::from_vec(
        counts.iter().map(|c| c / rows).collect::<Vec<_>>(),
        num_experts,
        &dev,
    )?;
    let p = (prob_sum / rows as f64)?;
    let loss = ((f * p)?.sum_all()? * num_experts as f64)?;
    Ok((loss, counts))
}

/// Per-token helper for tests and logging: the experts chosen for each row of `router_logits`.
pub fn chosen_experts(router_logits: &Tensor, top_k: usize) -> Result<Vec<Vec<u32>>> {
    let probs = crate::ops::softmax_last(&router_logits.to_dtype(DType::F32)?)?;
    Ok(top_k_rows(&probs.to_vec2::<f32>()?, top_k))
}

/// Builds layer `l`'s sparse block from transformers' per-expert tensors (the layout
/// `save_pretrained` writes: `experts.{j}.gate_proj.weight` / Mixtral `experts.{j}.w1.weight`).
pub(crate) fn take_block(
    tk: &mut crate::weights::Taker<'_>,
    m: &MoeConfig,
    h: usize,
    l: usize,
) -> Result<Moe> {
    let p = m.prefix(l);
    let router = tk.take(&format!("{p}.gate.weight"), &[m.num_experts, h])?;
    let experts = (0..m.num_experts)
        .map(|j| {
            tk.gated_mlp_named(
                &format!("{p}.experts.{j}"),
                m.expert_names(),
                h,
                m.expert_size,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let shared = match m.shared_expert_size {
        None => None,
        Some(s) => {
            let names = crate::weights::GATED_NAMES;
            let mlp = tk.gated_mlp_named(&format!("{p}.shared_expert"), names, h, s)?;
            Some((
                mlp,
                tk.take(&format!("{p}.shared_expert_gate.weight"), &[1, h])?,
            ))
        }
    };
    Ok(Moe {
        router,
        experts,
        shared,
        top_k: m.top_k,
        norm_topk_prob: m.norm_topk_prob,
    })
}

/// Layer `l`'s sparse block under transformers' names (inverse of [`take_block`]).
pub(crate) fn push_block(
    out: &mut Vec<(String, Tensor)>,
    block: &Moe,
    cfg: &crate::config::ModelConfig,
    l: usize,
) -> Result<()> {
    let Some(m) = &cfg.moe else {
        return Err(Error::Invalid("a sparse block in a dense config".into()));
    };
    let p = m.prefix(l);
    out.push((format!("{p}.gate.weight"), block.router.clone()));
    for (j, e) in block.experts.iter().enumerate() {
        crate::weights::push_mlp(out, &format!("{p}.experts.{j}"), e, m.expert_names())?;
    }
    if let Some((mlp, gate)) = &block.shared {
        let names = crate::weights::GATED_NAMES;
        crate::weights::push_mlp(out, &format!("{p}.shared_expert"), mlp, names)?;
        out.push((format!("{p}.shared_expert_gate.weight"), gate.clone()));
    }
    Ok(())
}

/// Shapes of layer `l`'s sparse block (for random initialisation).
pub(crate) fn block_shapes(m: &MoeConfig, h: usize, l: usize) -> Vec<(String, Vec<usize>)> {
    let p = m.prefix(l);
    let mut out = vec![(format!("{p}.gate.weight"), vec![m.num_experts, h])];
    for j in 0..m.num_experts {
        let e = format!("{p}.experts.{j}");
        out.extend(crate::weights::mlp_shapes(
            &e,
            m.expert_names(),
            h,
            m.expert_size,
        ));
    }
    if let Some(s) = m.shared_expert_size {
        let names = crate::weights::GATED_NAMES;
        out.extend(crate::weights::mlp_shapes(
            &format!("{p}.shared_expert"),
            names,
            h,
            s,
        ));
        out.push((format!("{p}.shared_expert_gate.weight"), vec![1, h]));
    }
    out
}

/// The scaled router loss to add, and `(name, value)` metrics to log.
pub type TrainingAux = (Tensor, Vec<(String, f64)>);

/// For trainers, after the forward pass of a training step: the router load-balancing loss
/// scaled by `router_aux_loss_coef` (what transformers adds to the loss with
/// `output_router_logits`), and metrics to log: `moe_aux_loss` (unscaled) and, per expert,
/// `moe_tokens/{e}`, the tokens routed to it per sparse layer (a collapsing router shows as a
/// few experts taking everything). `None` for dense models. `segments` `(B*T)`: 0 = padding.
pub fn training_aux(model: &crate::CausalLm, segments: &[u32]) -> Result<Option<TrainingAux>> {
    let Some(cfg) = &model.config.moe else {
        return Ok(None);
    };
    let Some((loss, counts)) = model.router_aux_loss(Some(segments))? else {
        return Ok(None);
    };
    let sparse = (0..model.config.num_layers)
        .filter(|&l| cfg.is_sparse(l))
        .count()
        .max(1);
    let mut metrics = vec![(
        "moe_aux_loss".to_string(),
        f64::from(loss.to_scalar::<f32>()?),
    )];
    for (e, c) in counts.iter().enumerate() {
        metrics.push((format!("moe_tokens/{e}"), f64::from(*c) / sparse as f64));
    }
    Ok(Some(((loss * cfg.router_aux_loss_coef)?, metrics)))
}
