//! Fused CPU kernels with analytic backwards: fewer passes over memory and fewer intermediate
//! tensors kept for the backward pass than the same op composed from primitives.
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;
use std::cell::Cell;

thread_local! {
    static PLAIN: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every CPU-only kernel (this module's fused ops and the decoding GEMV of
/// [`crate::gemv`]) turned off on this thread, so the CPU takes the path of plain candle ops
/// that a GPU takes. Tests use it to check that both paths give the same numbers.
pub fn plain_ops<T>(f: impl FnOnce() -> T) -> T {
    let was = PLAIN.with(|p| p.replace(true));
    let out = f();
    PLAIN.with(|p| p.set(was));
    out
}

/// Whether a CPU-only kernel may run on `x`: it lives on the CPU and [`plain_ops`] is not on.
/// Every custom op checks this, so GPU tensors always take plain candle ops.
pub(crate) fn cpu_kernels(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && !PLAIN.with(|p| p.get())
}

/// Softmax over the last dimension (f32, CPU). Backward: `dx = y ⊙ (dy − Σ dy ⊙ y)`, which
/// needs only the output, so the shifted input and its exponentials are not kept.
struct SoftmaxLast;

impl CustomOp1 for SoftmaxLast {
    fn name(&self) -> &'static str {
        "rudder-softmax-last"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("rudder-softmax-last: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("rudder-softmax-last: contiguous input only");
        };
        let dim = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut out = data[start..end].to_vec();
        out.par_chunks_mut(dim).for_each(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|v| *v *= inv);
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dot = (grad * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some(res.mul(&grad.broadcast_sub(&dot)?)?))
    }
}

/// Softmax over the last dimension: the fused kernel for contiguous f32 CPU tensors, `None`
/// elsewhere (the caller composes it from primitives).
pub fn softmax_last(x: &Tensor) -> Result<Option<Tensor>> {
    if !cpu_kernels(x) || x.dtype() != DType::F32 {
        return Ok(None);
    }
    x.contiguous()?.apply_op1(SoftmaxLast).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

/// `x Wᵀ` for a frozen `W` (LoRA's base weights, a reference model under a tracked input).
/// candle's matmul backward builds the gradient of both operands; for a frozen weight that is a
/// full-size tensor nobody reads, as costly as the forward GEMM. This op's backward produces
/// only `dx = dy W`.
struct FrozenMatmulT {
    w: Tensor,
}

impl CustomOp1 for FrozenMatmulT {
    fn name(&self) -> &'static str {
        "rudder-frozen-matmul-t"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("rudder-frozen-matmul-t: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("rudder-frozen-matmul-t: contiguous input only");
        };
        // The input is copied into an untracked tensor so candle's GEMM can run on it; the copy
        // is small next to the product.
        let x = Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)?;
        let y = crate::linear::matmul_t(&x, &self.w)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1()?), shape))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // (..., out) x (out, in) -> (..., in)
        let Some((&out, lead)) = grad.dims().split_last() else {
            candle_core::bail!("rudder-frozen-matmul-t: scalar gradient");
        };
        let rows: usize = lead.iter().product();
        let dx = grad.reshape((rows, out))?.matmul(&self.w)?;
        let mut dims = lead.to_vec();
        dims.push(self.w.dim(1)?);
        Ok(Some(dx.reshape(dims)?))
    }
}

/// `x Wᵀ` through [`FrozenMatmulT`] when `x` needs a gradient and `w` does not (f32, CPU);
/// `None` elsewhere (GPU: candle's matmul, whose backward also forms the unused `dW`).
pub fn frozen_matmul_t(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    if !cpu_kernels(x)
        || x.dtype() != DType::F32
        || w.dtype() != DType::F32
        || !x.track_op()
        || w.track_op()
    {
        return Ok(None);
    }
    let op = FrozenMatmulT { w: w.contiguous()? };
    x.contiguous()?.apply_op1(op).map(Some)
}

#[cfg(test)]
mod frozen_tests {
    use super::*;

    #[test]
    fn frozen_matmul_gives_the_input_gradient_of_a_plain_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5, 6), &dev)?)?;
        let w = Tensor::randn(0f32, 1.0, (7, 6), &dev)?;
        let up = Tensor::randn(0f32, 1.0, (2, 5, 7), &dev)?;
        let fused = frozen_matmul_t(x.as_tensor(), &w)?.expect("applies");
        let plain = x.as_tensor().broadcast_matmul(&w.t()?)?;
        let d = (&fused - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "forward {d}");
        let g1 = (fused * &up)?.sum_all()?.backward()?;
        let g2 = (plain * &up)?.sum_all()?.backward()?;
        let d = (g1.get(&x).expect("grad") - g2.get(&x).expect("grad"))?;
        let d = d.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "backward {d}");
        // A trainable weight keeps candle's own matmul (it needs its gradient).
        let wv = candle_core::Var::from_tensor(&w)?;
        assert!(frozen_matmul_t(x.as_tensor(), wv.as_tensor())?.is_none());
        assert!(plain_ops(|| frozen_matmul_t(x.as_tensor(), &w))?.is_none());
        Ok(())
    }
}
