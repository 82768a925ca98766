//! Softmax over the last dimension.
use super::cpu_kernels;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

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
}
