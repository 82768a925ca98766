//! The gated MLP's activation `silu(g) · u` in one pass.
use super::{contiguous_f32, cpu_kernels, with_f32, GRAIN};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `y = silu(g) · u`. The composed version keeps `silu(g)` as well as the product; this op
/// keeps only `g` and `u` and recomputes the sigmoid in the backward.
struct SwiGlu;

/// `σ(g)`, written as candle's `silu` does (`g / (1 + e^−g)`), so the forward rounds alike.
fn sigmoid(g: f32) -> f32 {
    1.0 / (1.0 + (-g).exp())
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "rudder-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = contiguous_f32(s1, l1, self.name())?;
        let u = contiguous_f32(s2, l2, self.name())?;
        if l1.shape() != l2.shape() {
            candle_core::bail!("rudder-swiglu: {:?} vs {:?}", l1.dims(), l2.dims());
        }
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(GRAIN)
            .zip(g.par_chunks(GRAIN).zip(u.par_chunks(GRAIN)))
            .for_each(|(o, (g, u))| {
                for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *o = g / (1.0 + (-g).exp()) * u;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dg, du) = with_f32(g, |g| {
            with_f32(u, |u| with_f32(dy, |dy| Ok(grads(g, u, dy))))
        })?;
        let dg = Tensor::from_vec(dg, g.shape(), g.device())?;
        let du = Tensor::from_vec(du, u.shape(), u.device())?;
        Ok((Some(dg), Some(du)))
    }
}

/// `dg = dy · u · σ(g) · (1 + g · (1 − σ(g)))` and `du = dy · silu(g)`, in one pass.
fn grads(g: &[f32], u: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut dg = vec![0f32; g.len()];
    let mut du = vec![0f32; g.len()];
    dg.par_chunks_mut(GRAIN)
        .zip(du.par_chunks_mut(GRAIN))
        .zip(g.par_chunks(GRAIN).zip(u.par_chunks(GRAIN)))
        .zip(dy.par_chunks(GRAIN))
        .for_each(|(((dg, du), (g, u)), dy)| {
            for i in 0..g.len() {
                let s = sigmoid(g[i]);
                dg[i] = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                du[i] = dy[i] * g[i] * s;
            }
        });
    (dg, du)
}

/// `silu(g) · u` through [`SwiGlu`] for f32 CPU tensors of one shape (made contiguous),
/// `None` elsewhere (the caller composes it).
pub fn swiglu(g: &Tensor, u: &Tensor) -> Result<Option<Tensor>> {
    let fits = cpu_kernels(g)
        && g.dtype() == DType::F32
        && u.dtype() == DType::F32
        && g.shape() == u.shape();
    if !fits {
        return Ok(None);
    }
    g.contiguous()?
        .apply_op2(&u.contiguous()?, SwiGlu)
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::{max_diff, plain_ops};
    use candle_core::{Device, Var};

    #[test]
    fn fused_swiglu_matches_composed_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        // Odd shape, more elements than one rayon task, g spread wide enough to saturate σ.
        let g = Var::from_tensor(&Tensor::randn(0f32, 4.0, (3, 37, 211), &dev)?)?;
        let ut = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 211, 37), &dev)?)?;
        // u non-contiguous.
        let u = ut.as_tensor().transpose(1, 2)?;
        let up = Tensor::randn(0f32, 1.0, g.shape(), &dev)?;
        let fused = swiglu(g.as_tensor(), &u)?.expect("cpu f32");
        let composed = plain_ops(|| crate::ops::swiglu(g.as_tensor(), &u))?;
        assert!(max_diff(&fused, &composed)? < 1e-5, "forward");
        let g1 = (fused * &up)?.sum_all()?.backward()?;
        let g2 = (composed * &up)?.sum_all()?.backward()?;
        for (name, t) in [("g", g.as_tensor()), ("u", ut.as_tensor())] {
            let d = max_diff(g1.get(t).expect(name), g2.get(t).expect(name))?;
            assert!(d < 1e-5, "d{name} differs by {d}");
        }
        assert!(plain_ops(|| swiglu(g.as_tensor(), &u))?.is_none());
        Ok(())
    }
}
