//! A linear layer with an optional LoRA adapter.
use candle_core::{Result, Tensor, Var};

/// A LoRA adapter: `y += scale * (x Aᵀ) Bᵀ` with A `(r, in)`, B `(out, r)`.
#[derive(Debug, Clone)]
pub struct Lora {
    pub a: Var,
    pub b: Var,
    /// `lora_alpha / r`, as PEFT computes it (no rsLoRA).
    pub scale: f64,
}

/// `y = x Wᵀ + b`, weights in transformers' `(out, in)` layout.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: Option<Lora>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
        }
    }

    /// `x`: (..., in) -> (..., out). Weights are cast to the activation dtype here, so master
    /// weights can stay f32 while the forward runs in bf16.
    pub fn forward(&self, x: &Tensor, adapters: bool) -> Result<Tensor> {
        let dtype = x.dtype();
        let w = self.weight.to_dtype(dtype)?;
        let mut y = x.broadcast_matmul(&w.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.to_dtype(dtype)?)?;
        }
        if let (Some(l), true) = (&self.lora, adapters) {
            let a = l.a.as_tensor().to_dtype(dtype)?;
            let b = l.b.as_tensor().to_dtype(dtype)?;
            let delta = x.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)?;
            y = (y + (delta * l.scale)?)?;
        }
        Ok(y)
    }

    /// The weight with the adapter folded in (`W + scale · B A`), for export and merging.
    pub fn merged_weight(&self) -> Result<Tensor> {
        match &self.lora {
            None => Ok(self.weight.clone()),
            Some(l) => {
                let ba = l.b.as_tensor().matmul(l.a.as_tensor())?;
                self.weight.to_dtype(ba.dtype())? + (ba * l.scale)?
            }
        }
    }
}
