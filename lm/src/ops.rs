//! Differentiable building blocks of the decoder.
//!
//! candle-nn's fused `softmax_last_dim`, `rms_norm` and `rope` have no backward pass. On the CPU
//! (f32) these run [`crate::fused`]'s kernels, which have analytic backwards; elsewhere (GPU,
//! other dtypes, [`crate::fused::plain_ops`]) they are composed from primitive ops whose
//! gradients candle knows.
use candle_core::{DType, Device, Result, Tensor, D};

/// Softmax over the last dimension, computed in f32 (as transformers' eager attention does).
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    if let Some(y) = crate::fused::softmax_last(&x)? {
        return y.to_dtype(dtype);
    }
    // The max is a constant shift: softmax does not depend on it, so no gradient flows there.
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)?.to_dtype(dtype)
}

/// Attention probabilities `softmax(scores · scale + mask)` over the last dimension; `scores`
/// `(B, H, Tq, Tk)`, `mask` `(B, 1, Tq, Tk)` additive.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    if let Some(p) = crate::fused::masked_softmax(scores, mask, scale)? {
        return Ok(p);
    }
    softmax_last(&(scores * scale)?.broadcast_add(mask)?)
}

/// Log-softmax over the last dimension in f32, whatever the input dtype.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// RMSNorm as in transformers' `LlamaRMSNorm`: normalise in f32, cast back, scale by `w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if let Some(y) = crate::fused::rms_norm(x, w, eps)? {
        return Ok(y);
    }
    let dtype = x.dtype();
    let x32 = x.to_dtype(DType::F32)?;
    let var = x32.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (var + eps)?.sqrt()?.recip()?;
    let normed = x32.broadcast_mul(&inv)?.to_dtype(dtype)?;
    normed.broadcast_mul(&w.to_dtype(dtype)?)
}

/// LayerNorm as `torch.nn.LayerNorm` (biased variance), normalised in f32, from differentiable
/// primitives: candle-nn's fused `layer_norm` has no backward.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x32 = x.to_dtype(DType::F32)?;
    let centred = x32.broadcast_sub(&x32.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    let y = normed
        .broadcast_mul(&w.to_dtype(DType::F32)?)?
        .broadcast_add(&b.to_dtype(DType::F32)?)?;
    y.to_dtype(dtype)
}

/// Rotary embedding with transformers' `rotate_half` layout.
/// `x`: (B, H, T, D); `cos`, `sin`: (B, 1, T, D/2).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if let Some(y) = crate::fused::rope(x, cos, sin)? {
        return Ok(y);
    }
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let (cos, sin) = (cos.to_dtype(x.dtype())?, sin.to_dtype(x.dtype())?);
    let o1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let o2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Tensor::cat(&[&o1, &o2], D::Minus1)
}

/// The gated MLP's activation `silu(g) · u`.
pub fn swiglu(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    if let Some(y) = crate::fused::swiglu(g, u)? {
        return Ok(y);
    }
    g.silu()? * u
}

/// cos/sin tables `(B, 1, T, D/2)` for the given positions `(B*T)`.
pub fn rope_tables(
    inv_freq: &[f32],
    scale: f32,
    positions: &[u32],
    b: usize,
    t: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(positions.len() * half);
    let mut sin = Vec::with_capacity(positions.len() * half);
    for &p in positions {
        for &f in inv_freq {
            // f32 product, as transformers computes `inv_freq @ position_ids` in float32.
            let angle = (p as f32) * f;
            // `scale`: YaRN's attention factor (1 otherwise), as transformers scales cos and sin.
            cos.push(angle.cos() * scale);
            sin.push(angle.sin() * scale);
        }
    }
    let cos = Tensor::from_vec(cos, (b, 1, t, half), device)?;
    let sin = Tensor::from_vec(sin, (b, 1, t, half), device)?;
    Ok((cos, sin))
}

/// The additive mask value: very negative but finite, so fully masked rows give no NaN.
pub fn mask_value(dtype: DType) -> f32 {
    match dtype {
        DType::F16 => -65504.0,
        _ => f32::MIN / 2.0,
    }
}

/// The segment of keys every segment sees: a prefix that packed prompts share.
pub const SHARED_SEGMENT: u32 = u32::MAX;

/// Additive attention mask `(B, 1, Tq, Tk)`.
///
/// Key `k` is visible to query `q` when it is not padding (`key_seg != 0`), belongs to the same
/// segment (packing: no attention across samples) or to [`SHARED_SEGMENT`], and is not in the
/// future (`k <= past + q`).
pub fn attention_mask(
    query_seg: &[u32],
    key_seg: &[u32],
    b: usize,
    tq: usize,
    tk: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let past = tk - tq;
    let neg = mask_value(dtype);
    let mut m = vec![neg; b * tq * tk];
    for bi in 0..b {
        for q in 0..tq {
            let qs = query_seg[bi * tq + q];
            let row = &mut m[(bi * tq + q) * tk..(bi * tq + q + 1) * tk];
            for (k, slot) in row.iter_mut().enumerate().take(past + q + 1) {
                let ks = key_seg[bi * tk + k];
                if ks != 0 && qs != 0 && (ks == qs || ks == SHARED_SEGMENT) {
                    *slot = 0.0;
                }
            }
        }
    }
    Tensor::from_vec(m, (b, 1, tq, tk), device)?.to_dtype(dtype)
}

/// Repeats key/value heads for grouped-query attention: (B, KV, T, D) -> (B, KV*n, T, D).
pub fn repeat_kv(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kv, n, t, d))?
        .reshape((b, kv * n, t, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One packed row: a shared prefix (2 keys), then segments 1 and 2 (2 keys each), then a
    /// padding position. 0 = visible, `x` = hidden.
    #[test]
    fn packed_segments_see_the_shared_prefix_and_themselves_only() -> Result<()> {
        let s = SHARED_SEGMENT;
        let segs = [s, s, 1, 1, 2, 2, 0];
        let m = attention_mask(&segs, &segs, 1, 7, 7, DType::F32, &Device::Cpu)?;
        let seen: Vec<String> = m
            .squeeze(0)?
            .squeeze(0)?
            .to_vec2::<f32>()?
            .iter()
            .map(|r| {
                r.iter()
                    .map(|&v| if v == 0.0 { 'o' } else { 'x' })
                    .collect()
            })
            .collect();
        let want = [
            "oxxxxxx", // prefix 0: itself
            "ooxxxxx", // prefix 1: the prefix
            "oooxxxx", // segment 1: prefix + itself
            "ooooxxx", // segment 1
            "ooxxoxx", // segment 2: prefix + itself, not segment 1
            "ooxxoox", // segment 2
            "xxxxxxx", // padding sees nothing
        ];
        assert_eq!(seen, want);
        Ok(())
    }
}
