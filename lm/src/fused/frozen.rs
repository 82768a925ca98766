//! `x Wᵀ` for a frozen weight: only the input gradient.
use super::cpu_kernels;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Storage, Tensor};

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
        // One GEMM straight on the input's and the weight's buffers (the weight read as the
        // transposed `(in, out)` view of its `(out, in)` layout): no copy of either side.
        let Some((&k, lead)) = layout.dims().split_last() else {
            candle_core::bail!("rudder-frozen-matmul-t: scalar input");
        };
        if !layout.is_contiguous() {
            candle_core::bail!("rudder-frozen-matmul-t: contiguous input only");
        }
        let (out, inner) = self.w.dims2()?;
        if k != inner {
            candle_core::bail!("rudder-frozen-matmul-t: input has {k} features, weight {inner}");
        }
        let m: usize = lead.iter().product();
        let x_layout = Layout::contiguous_with_offset((m, k), layout.start_offset());
        let (w_storage, w_layout) = self.w.storage_and_layout();
        let Storage::Cpu(w_cpu) = &*w_storage else {
            candle_core::bail!("rudder-frozen-matmul-t: weight not on the CPU");
        };
        let y = storage.matmul(w_cpu, (1, m, out, k), &x_layout, &w_layout.transpose(0, 1)?)?;
        let mut dims = lead.to_vec();
        dims.push(out);
        Ok((y, Shape::from(dims)))
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
    use crate::fused::plain_ops;
    use candle_core::Device;

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
        // An input that starts inside its buffer (a contiguous slice) is read from its offset.
        let big = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 5, 6), &dev)?)?;
        let part = big.as_tensor().narrow(0, 1, 2)?;
        let fused = frozen_matmul_t(&part, &w)?.expect("applies");
        let plain = part.broadcast_matmul(&w.t()?)?;
        let d = (&fused - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "forward at an offset {d}");
        // A trainable weight keeps candle's own matmul (it needs its gradient).
        let wv = candle_core::Var::from_tensor(&w)?;
        assert!(frozen_matmul_t(x.as_tensor(), wv.as_tensor())?.is_none());
        assert!(plain_ops(|| frozen_matmul_t(x.as_tensor(), &w))?.is_none());
        Ok(())
    }
}
