//! A linear layer with an optional LoRA adapter.
use crate::dropout;
use crate::gemv::param;
use candle_core::{Result, Tensor, Var};

/// A LoRA adapter: `y += scale * (dropout(x) Aᵀ) Bᵀ` with A `(r, in)`, B `(out, r)`.
#[derive(Debug, Clone)]
pub struct Lora {
    pub a: Var,
    pub b: Var,
    /// `lora_alpha / r` (`/ sqrt(r)` with rsLoRA), as PEFT computes it.
    pub scale: f64,
    /// Dropout probability on the adapter's input in training forwards (`lora_dropout`).
    pub dropout: f64,
    /// The projection's number in the model, which its dropout masks derive from.
    pub module: u64,
}

/// How a forward pass uses the LoRA adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adapters {
    /// Whether adapters take part at all (off: the base model).
    pub on: bool,
    /// In a training forward, the key the adapters' dropout masks derive from (see
    /// [`crate::dropout`]); `None` (evaluation, scoring, generation) runs them without dropout.
    pub dropout_key: Option<u64>,
}

impl Adapters {
    /// Adapters on, no dropout.
    pub const ON: Self = Self {
        on: true,
        dropout_key: None,
    };
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
    pub fn forward(&self, x: &Tensor, adapters: Adapters) -> Result<Tensor> {
        let dtype = x.dtype();
        let w = param(&self.weight).to_dtype(dtype)?;
        let lora = self.lora.as_ref().filter(|_| adapters.on);
        // Decoding adds the adapter inside the weight's own pass (see `gemv::LowRank`).
        let decoded = match lora {
            Some(l) => decode_with_adapter(x, &w, l)?,
            None => None,
        };
        let with_adapter = decoded.is_some();
        let mut y = match decoded {
            Some(y) => y,
            None => match crate::fused::frozen_matmul_t(x, &w)? {
                Some(y) => y,
                None => matmul_t(x, &w)?,
            },
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&param(b).to_dtype(dtype)?)?;
        }
        if let (Some(l), false) = (lora, with_adapter) {
            let a = param(l.a.as_tensor()).to_dtype(dtype)?;
            let b = param(l.b.as_tensor()).to_dtype(dtype)?;
            let x = match adapters.dropout_key.filter(|_| l.dropout > 0.0) {
                // PEFT drops the adapter's input only: lora_B(lora_A(dropout(x))).
                Some(key) => {
                    let mask =
                        dropout::mask(key, l.module, x.shape(), l.dropout, dtype, x.device())?;
                    (x * mask)?
                }
                None => x.clone(),
            };
            let delta = matmul_t(&matmul_t(&x, &a)?, &b)?;
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

/// `x Wᵀ + scale · (x Aᵀ) Bᵀ` through the decoding GEMV, or `None` off its path.
fn decode_with_adapter(x: &Tensor, w: &Tensor, l: &Lora) -> Result<Option<Tensor>> {
    let Some((&inner, lead)) = x.dims().split_last() else {
        return Ok(None);
    };
    if !crate::gemv::decoding_on(x) {
        return Ok(None); // training and scoring: no reshape, no copy
    }
    let rows: usize = lead.iter().product();
    let low = crate::gemv::LowRank {
        a: l.a.as_tensor(),
        b: l.b.as_tensor(),
        scale: l.scale,
    };
    let Some(y) = crate::gemv::try_matmul_t_low_rank(&x.reshape((rows, inner))?, w, Some(low))?
    else {
        return Ok(None);
    };
    let mut out = lead.to_vec();
    out.push(w.dim(0)?);
    y.reshape(out).map(Some)
}

/// `x Wᵀ` for `x` of any rank `(..., in)` and `w` `(out, in)`: the leading dimensions are folded
/// into one so that a single GEMM reads the weight once (a broadcast batched matmul would read it
/// once per batch row, which dominates decoding).
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let Some((&inner, lead)) = x.dims().split_last() else {
        return Err(candle_core::Error::Msg(
            "matmul_t: a scalar has no feature dimension".into(),
        ));
    };
    let rows: usize = lead.iter().product();
    let x2 = x.reshape((rows, inner))?;
    // Few rows (decoding): compute (W xᵀ)ᵀ so the big weight is the row-major left operand
    // and is streamed once instead of being repacked as a transposed right operand.
    if let Some(y) = crate::gemv::try_matmul_t(&x2, w)? {
        let mut out = lead.to_vec();
        out.push(w.dim(0)?);
        return y.reshape(out);
    }
    let y = if rows <= 16 {
        w.matmul(&x2.t()?)?.t()?.contiguous()?
    } else {
        x2.matmul(&w.t()?)?
    };
    let mut out = lead.to_vec();
    out.push(w.dim(0)?);
    y.reshape(out)
}
