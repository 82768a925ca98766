//! Softmax over the last dimension.
use super::{contiguous_f32, cpu_kernels, dot, rows_per_task, with_f32};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Softmax over the last dimension of `x · scale + mask` (f32, CPU); `mask` `(B, 1, Tq, Tk)` is
/// shared by the heads of `x` `(B, H, Tq, Tk)`. Attention's scale and mask are folded in, so
/// neither the scaled nor the masked scores are formed and kept. Backward:
/// `dx = scale · y ⊙ (dy − Σ dy ⊙ y)`, which needs only the output.
struct SoftmaxLast {
    scale: f32,
    mask: Option<Tensor>,
}

impl CustomOp1 for SoftmaxLast {
    fn name(&self) -> &'static str {
        "rudder-softmax-last"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        let dim = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        let rows = out.par_chunks_mut(dim).zip(x.par_chunks(dim)).enumerate();
        let rows = rows.with_min_len(rows_per_task(dim));
        let Some(mask) = &self.mask else {
            rows.for_each(|(_, (o, x))| softmax_row(o, x, self.scale, None));
            return Ok((CpuStorage::F32(out), layout.shape().clone()));
        };
        let &[_, h, tq, _] = layout.dims() else {
            candle_core::bail!("rudder-softmax-last: a mask needs (B, H, Tq, Tk) scores");
        };
        with_f32(mask, |m| {
            rows.for_each(|(r, (o, x))| {
                // Row r = (b, head, q) reads mask row (b, q).
                let at = (r / (h * tq) * tq + r % tq) * dim;
                softmax_row(o, x, self.scale, Some(&m[at..at + dim]));
            });
            Ok(())
        })?;
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dim = res.dim(D::Minus1)?.max(1);
        let dx = with_f32(res, |y| {
            with_f32(grad, |dy| Ok(softmax_grad(y, dy, dim, self.scale)))
        })?;
        Tensor::from_vec(dx, res.shape(), res.device()).map(Some)
    }
}

/// One row: `o = softmax(x · scale + mask)`, rounded as the composed ops round it.
fn softmax_row(o: &mut [f32], x: &[f32], scale: f32, mask: Option<&[f32]>) {
    match mask {
        Some(m) => o
            .iter_mut()
            .zip(x)
            .zip(m)
            .for_each(|((o, x), m)| *o = x * scale + m),
        None => o.iter_mut().zip(x).for_each(|(o, x)| *o = x * scale),
    }
    let max = o.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in o.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    o.iter_mut().for_each(|v| *v *= inv);
}

/// `dx = scale · y ⊙ (dy − Σ dy ⊙ y)` row by row, in one pass (the composed form allocates
/// three full-size temporaries).
fn softmax_grad(y: &[f32], dy: &[f32], dim: usize, scale: f32) -> Vec<f32> {
    let mut dx = vec![0f32; y.len()];
    dx.par_chunks_mut(dim)
        .zip(y.par_chunks(dim).zip(dy.par_chunks(dim)))
        .with_min_len(rows_per_task(dim))
        .for_each(|(dx, (y, dy))| {
            let s = dot(dy, y);
            for i in 0..dx.len() {
                dx[i] = scale * (y[i] * (dy[i] - s));
            }
        });
    dx
}

/// Softmax over the last dimension: the fused kernel for f32 CPU tensors (made contiguous),
/// `None` elsewhere (the caller composes it from primitives).
pub fn softmax_last(x: &Tensor) -> Result<Option<Tensor>> {
    if !cpu_kernels(x) || x.dtype() != DType::F32 {
        return Ok(None);
    }
    let op = SoftmaxLast {
        scale: 1.0,
        mask: None,
    };
    x.contiguous()?.apply_op1(op).map(Some)
}

/// `softmax(x · scale + mask)` over the last dimension for attention scores `x` `(B, H, Tq, Tk)`
/// and an additive mask `(B, 1, Tq, Tk)` (f32, CPU); `None` elsewhere.
pub fn masked_softmax(x: &Tensor, mask: &Tensor, scale: f64) -> Result<Option<Tensor>> {
    let fits = cpu_kernels(x)
        && x.dtype() == DType::F32
        && mask.dtype() == DType::F32
        && x.rank() == 4
        && mask.dims() == [x.dim(0)?, 1, x.dim(2)?, x.dim(3)?];
    if !fits {
        return Ok(None);
    }
    let op = SoftmaxLast {
        scale: scale as f32,
        mask: Some(mask.contiguous()?),
    };
    x.contiguous()?.apply_op1(op).map(Some)
}

/// `log Σ exp(x)` over the last dimension, kept as `(..., 1)`. The composed form keeps the
/// shifted input and its exponentials (two tensors the size of the logits); this op keeps
/// nothing new. Backward: `dx = dy · exp(x − lse)`.
struct LogSumExpLast;

impl CustomOp1 for LogSumExpLast {
    fn name(&self) -> &'static str {
        "rudder-logsumexp-last"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        let dim = layout.dims().last().copied().unwrap_or(1).max(1);
        let out: Vec<f32> = x
            .par_chunks(dim)
            .with_min_len(rows_per_task(dim))
            .map(|row| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
                sum.ln() + max
            })
            .collect();
        let mut dims = layout.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = 1;
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, lse: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dim = x.dim(D::Minus1)?.max(1);
        let mut dx = vec![0f32; x.elem_count()];
        with_f32(x, |x| {
            with_f32(lse, |lse| {
                with_f32(grad, |dy| {
                    dx.par_chunks_mut(dim)
                        .zip(x.par_chunks(dim).zip(lse.par_iter().zip(dy)))
                        .with_min_len(rows_per_task(dim))
                        .for_each(|(dx, (x, (lse, dy)))| {
                            dx.iter_mut()
                                .zip(x)
                                .for_each(|(d, x)| *d = dy * (x - lse).exp())
                        });
                    Ok(())
                })
            })
        })?;
        Tensor::from_vec(dx, x.shape(), x.device()).map(Some)
    }
}

/// `log Σ exp(x)` over the last dimension, `(..., 1)`, for f32 CPU tensors; `None` elsewhere.
pub fn logsumexp_last(x: &Tensor) -> Result<Option<Tensor>> {
    if !cpu_kernels(x) || x.dtype() != DType::F32 || x.rank() == 0 {
        return Ok(None);
    }
    x.contiguous()?.apply_op1(LogSumExpLast).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::plain_ops;
    use candle_core::Device;

    #[test]
    fn fused_softmax_matches_composed_forward_and_backward() -> Result<()> {
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 3.0, (2, 3, 7), &Device::Cpu)?)?;
        let w = Tensor::randn(0f32, 1.0, (2, 3, 7), &Device::Cpu)?;
        let fused = softmax_last(x.as_tensor())?.expect("cpu f32");
        let max = x.max_keepdim(D::Minus1)?.detach();
        let e = x.broadcast_sub(&max)?.exp()?;
        let composed = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        let d = (&fused - &composed)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-6, "forward {d}");
        let g1 = (fused * &w)?.sum_all()?.backward()?;
        let g2 = (composed * &w)?.sum_all()?.backward()?;
        let (a, b) = (g1.get(&x).expect("grad"), g2.get(&x).expect("grad"));
        let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-6, "backward {d}");
        // plain_ops: the GPU's path (composed ops) on the CPU.
        assert!(plain_ops(|| softmax_last(x.as_tensor()))?.is_none());
        Ok(())
    }

    #[test]
    fn fused_masked_softmax_matches_composed_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, tq, tk) = (2, 3, 5, 7);
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 3.0, (b, h, tq, tk), &dev)?)?;
        let segs: Vec<u32> = (0..b * tk).map(|i| u32::from(i % 4 != 0)).collect();
        let qsegs: Vec<u32> = vec![1; b * tq];
        let mask = crate::ops::attention_mask(&qsegs, &segs, b, tq, tk, DType::F32, &dev)?;
        let up = Tensor::randn(0f32, 1.0, x.shape(), &dev)?;
        let fused = masked_softmax(x.as_tensor(), &mask, 0.37)?.expect("cpu f32");
        let composed = plain_ops(|| crate::ops::masked_softmax(x.as_tensor(), &mask, 0.37))?;
        assert!(crate::fused::max_diff(&fused, &composed)? < 1e-6, "forward");
        let g1 = (fused * &up)?.sum_all()?.backward()?;
        let g2 = (composed * &up)?.sum_all()?.backward()?;
        let d = crate::fused::max_diff(g1.get(&x).expect("dx"), g2.get(&x).expect("dx"))?;
        assert!(d < 1e-6, "backward {d}");
        assert!(plain_ops(|| masked_softmax(x.as_tensor(), &mask, 0.37))?.is_none());
        Ok(())
    }

    #[test]
    fn fused_logsumexp_matches_composed_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 5.0, (3, 4, 301), &dev)?)?;
        let up = Tensor::randn(0f32, 1.0, (3, 4, 1), &dev)?;
        let fused = logsumexp_last(x.as_tensor())?.expect("cpu f32");
        let max = x.max_keepdim(D::Minus1)?.detach();
        let shifted = x.broadcast_sub(&max)?;
        let composed = shifted
            .exp()?
            .sum_keepdim(D::Minus1)?
            .log()?
            .broadcast_add(&max)?;
        assert_eq!(fused.dims(), composed.dims());
        assert!(crate::fused::max_diff(&fused, &composed)? < 1e-5, "forward");
        let g1 = (fused * &up)?.sum_all()?.backward()?;
        let g2 = (composed * &up)?.sum_all()?.backward()?;
        let d = crate::fused::max_diff(g1.get(&x).expect("dx"), g2.get(&x).expect("dx"))?;
        assert!(d < 1e-5, "backward {d}");
        assert!(plain_ops(|| logsumexp_last(x.as_tensor()))?.is_none());
        Ok(())
    }
}
