//! Activation checkpointing (transformers' `gradient_checkpointing`, on by default in TRL's SFT
//! and DPO trainers): the forward runs the decoder layers without recording a graph and keeps
//! only each layer's input; the backward recomputes one layer at a time with a graph and
//! back-propagates through it. Peak memory holds one layer's activations instead of all of them,
//! for about one more forward pass of compute.
//!
//! candle has no hook into its backward pass other than a custom op's `bwd`, so the layers'
//! output enters the graph through [`Recompute`], an op whose backward does the recomputation.
//! It returns the gradient of the layers' input (the embeddings, which candle then
//! back-propagates as usual); the layers' parameter gradients come out of nested backward
//! passes and are parked on this thread until [`backward`] adds them to the loss's gradients.
use crate::linear::Linear;
use crate::model::{Ctx, Ffn, Layer, Qkv};
use candle_core::backend::BackendStorage;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor, TensorId, Var};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

thread_local! {
    /// Parameter gradients of recomputed layers since the last [`backward`] started.
    static PARKED: RefCell<HashMap<TensorId, Tensor>> = RefCell::new(HashMap::new());
}

/// `loss.backward()`, plus the parameter gradients of every checkpointed forward pass that the
/// loss depends on. Without checkpointed forwards it is exactly `loss.backward()`.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    PARKED.with(|p| p.borrow_mut().clear());
    let mut grads = loss.backward()?;
    let parked = PARKED.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for (id, g) in parked {
        let g = match grads.get_id(id) {
            Some(prev) => (prev + g)?,
            None => g,
        };
        grads.insert_id(id, g);
    }
    Ok(grads)
}

/// Runs `layers` over `x` `(B, T, H)` without keeping their activations; the result is part of
/// the graph through [`Recompute`].
pub(crate) fn layers(layers: &[Layer], x: Tensor, ctx: &Ctx) -> Result<Tensor> {
    let mut inputs = Vec::with_capacity(layers.len());
    let mut h = x.detach();
    for layer in layers {
        let next = layer.forward(&h, ctx, None)?.detach();
        inputs.push(std::mem::replace(&mut h, next));
    }
    // The op's argument must be tracked for candle to call its backward; with frozen
    // embeddings (LoRA) a fresh variable stands in, and its gradient is dropped.
    let tracked = x.track_op();
    let arg = if tracked {
        x
    } else {
        Var::from_tensor(&x)?.as_tensor().clone()
    };
    let op = Recompute {
        layers: layers.to_vec(),
        inputs,
        out: h.contiguous()?,
        rope: ctx.rope.clone(),
        mask: ctx.mask.clone(),
        adapters: ctx.adapters,
        cfg: ctx.cfg.clone(),
        input_grad: tracked,
    };
    arg.apply_op1(op)
}

/// The checkpointed layers: forward returns their precomputed output, backward recomputes.
struct Recompute {
    layers: Vec<Layer>,
    /// Input of every layer, detached.
    inputs: Vec<Tensor>,
    /// Output of the last layer, detached.
    out: Tensor,
    rope: Option<(Tensor, Tensor)>,
    mask: Tensor,
    /// Whether adapters run, and the dropout key of the first forward (the recompute draws the
    /// same masks).
    adapters: crate::linear::Adapters,
    cfg: crate::config::ModelConfig,
    /// Whether the argument (the embeddings) wants its gradient.
    input_grad: bool,
}

impl Recompute {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            rope: self.rope.clone(),
            mask: self.mask.clone(),
            adapters: self.adapters,
            cfg: &self.cfg,
            router: Default::default(),
        }
    }

    /// Back-propagates `grad` (of the last layer's output) through the layers, last first,
    /// parking parameter gradients; returns the gradient of the first layer's input.
    fn backward_layers(&self, grad: &Tensor) -> Result<Tensor> {
        let ctx = self.ctx();
        let mut g = grad.clone();
        for (layer, input) in self.layers.iter().zip(&self.inputs).rev() {
            let x = Var::from_tensor(input)?;
            let y = layer.forward(x.as_tensor(), &ctx, None)?;
            // d/dθ Σ(y ⊙ g) is the vector-Jacobian product the chain rule needs.
            let mut grads = (y * &g)?.sum_all()?.backward()?;
            g = match grads.remove(x.as_tensor()) {
                Some(dx) => dx,
                // The layer's output does not depend on its input (never for a decoder layer).
                None => g.zeros_like()?,
            };
            park(&grads, &var_ids(layer))?;
        }
        Ok(g)
    }
}

/// The trainable parameters (variables) of a layer. candle's backward also computes gradients
/// of constants (masks, frozen weights, the incoming gradient); those are not parked.
fn var_ids(layer: &Layer) -> HashSet<TensorId> {
    let mut linears: Vec<&Linear> = vec![&layer.attn.o];
    match &layer.attn.qkv {
        Qkv::Split { q, k, v } => linears.extend([q, k, v]),
        Qkv::Fused(l) => linears.push(l),
    }
    if let Ffn::Dense(m) = &layer.mlp {
        linears.extend(m.gate.iter().chain([&m.up, &m.down]));
    }
    let mut tensors: Vec<&Tensor> = Vec::new();
    for l in linears {
        tensors.extend(std::iter::once(&l.weight).chain(&l.bias));
        if let Some(a) = &l.lora {
            tensors.extend([a.a.as_tensor(), a.b.as_tensor()]);
        }
    }
    for n in [&layer.input_norm, &layer.post_norm] {
        tensors.extend(std::iter::once(&n.weight).chain(&n.bias));
    }
    tensors.extend(layer.attn.q_norm.iter().chain(&layer.attn.k_norm));
    tensors
        .into_iter()
        .filter(|t| t.is_variable())
        .map(|t| t.id())
        .collect()
}

/// Adds the parameter gradients of one recomputed layer to the parked ones.
fn park(grads: &GradStore, vars: &HashSet<TensorId>) -> Result<()> {
    PARKED.with(|p| {
        let mut p = p.borrow_mut();
        for &id in vars {
            let Some(g) = grads.get_id(id) else { continue };
            let sum = match p.remove(&id) {
                Some(prev) => (prev + g)?,
                None => g.clone(),
            };
            p.insert(id, sum);
        }
        Ok(())
    })
}

impl CustomOp1 for Recompute {
    fn name(&self) -> &'static str {
        "rudder-checkpoint"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        let (guard, layout) = self.out.storage_and_layout();
        match &*guard {
            Storage::Cpu(s) => Ok((s.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("rudder-checkpoint: layers ran on another device"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (guard, layout) = self.out.storage_and_layout();
        match &*guard {
            Storage::Cuda(s) => Ok((s.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("rudder-checkpoint: layers ran on another device"),
        }
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = self.backward_layers(grad)?;
        Ok(self.input_grad.then_some(g))
    }
}
