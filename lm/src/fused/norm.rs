//! RMSNorm over the last dimension, as transformers' `LlamaRMSNorm` computes it in f32.
use super::{contiguous_f32, cpu_kernels, dot, rows_per_task, with_f32};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// `y = (x · r) · w` per row, `r = 1/sqrt(mean(x²) + eps)`. The composed version keeps `x²`,
/// `x · r` and the product for the backward pass; this op keeps nothing but its inputs and
/// recomputes `r` (one dot product per row) in the backward.
struct RmsNorm {
    eps: f32,
}

/// `1/sqrt(mean(x²) + eps)` of one row.
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    1.0 / (dot(x, x) / x.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rudder-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let h = w.len();
        if h == 0 || l1.dims().last() != Some(&h) {
            candle_core::bail!("rudder-rms-norm: weight of {h} for input {:?}", l1.dims());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .with_min_len(rows_per_task(h))
            .for_each(|(o, x)| {
                let r = inv_rms(x, self.eps);
                // (x · r) · w in this order, as the composed version rounds it.
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                    *o = (x * r) * w;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = with_f32(x, |x| {
            with_f32(w, |w| with_f32(dy, |dy| Ok(grads(x, w, dy, self.eps))))
        })?;
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        // A frozen weight (LoRA's base model) needs no gradient.
        let dw = match w.track_op() {
            true => Some(Tensor::from_vec(dw, w.shape(), w.device())?),
            false => None,
        };
        Ok((Some(dx), dw))
    }
}

/// `(dx, dw)` for rows of `x` and their output gradients `dy`. With `n = x · r` and
/// `g = dy · w`: `dx = r · (g − n · mean(g · n))`, `dw = Σ_rows dy · n`. `dw` is summed per
/// rayon task and the partial sums added at the end, so no `(rows, H)` temporary is formed.
fn grads(x: &[f32], w: &[f32], dy: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let h = w.len();
    let mut dx = vec![0f32; x.len()];
    let dw = dx
        .par_chunks_mut(h)
        .zip(x.par_chunks(h).zip(dy.par_chunks(h)))
        .with_min_len(rows_per_task(h))
        .fold(
            || vec![0f32; h],
            |mut dw, (dx, (x, dy))| {
                row_grads(dx, &mut dw, x, w, dy, eps);
                dw
            },
        )
        .reduce(
            || vec![0f32; h],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    (dx, dw)
}

/// One row of [`grads`]: writes `dx`, adds this row's `dy · n` into `dw`.
fn row_grads(dx: &mut [f32], dw: &mut [f32], x: &[f32], w: &[f32], dy: &[f32], eps: f32) {
    let r = inv_rms(x, eps);
    // mean(g · n) = r · mean(dy · w · x)
    let gx: f32 = x.iter().zip(w).zip(dy).map(|((x, w), dy)| dy * w * x).sum();
    let c = r * gx / x.len() as f32;
    for i in 0..x.len() {
        let n = x[i] * r;
        dw[i] += dy[i] * n;
        dx[i] = r * (dy[i] * w[i] - n * c);
    }
}

/// RMSNorm of f32 CPU tensors through [`RmsNorm`] (`x` made contiguous), `None` elsewhere
/// (the caller composes it from primitives).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Option<Tensor>> {
    let fits = cpu_kernels(x)
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && w.rank() == 1
        && w.dim(0)? > 0
        && x.rank() > 0
        && x.dim(D::Minus1)? == w.dim(0)?;
    if !fits {
        return Ok(None);
    }
    let op = RmsNorm { eps: eps as f32 };
    x.contiguous()?.apply_op2(&w.contiguous()?, op).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::{max_diff, plain_ops};
    use candle_core::{Device, Var};

    /// Forward and the gradients of `x` (through `var`, a view of which `x` is) and `w` against
    /// `ops::rms_norm`'s composed path.
    fn check(x: &Tensor, var: &Var, w: &Var) -> Result<()> {
        let up = Tensor::randn(0f32, 1.0, x.shape(), &Device::Cpu)?;
        let fused = rms_norm(x, w.as_tensor(), 1e-5)?.expect("cpu f32");
        let composed = plain_ops(|| crate::ops::rms_norm(x, w.as_tensor(), 1e-5))?;
        assert!(max_diff(&fused, &composed)? < 1e-5, "forward");
        let g1 = (fused * &up)?.sum_all()?.backward()?;
        let g2 = (composed * &up)?.sum_all()?.backward()?;
        for (name, t) in [("x", var.as_tensor()), ("w", w.as_tensor())] {
            let (a, b) = (g1.get(t).expect(name), g2.get(t).expect(name));
            let d = max_diff(a, b)?;
            assert!(d < 1e-5, "d{name} differs by {d}");
        }
        Ok(())
    }

    #[test]
    fn fused_rms_norm_matches_composed_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.5, 13, &dev)?)?;
        // Odd sizes: rows of 13 (not a multiple of the 8 dot-product lanes), 3·5·7 rows.
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (3, 5, 7, 13), &dev)?)?;
        check(x.as_tensor(), &x, &w)?;
        // Non-contiguous input (Qwen3's q/k norm on transposed heads).
        let t = Var::from_tensor(&Tensor::randn(0f32, 2.0, (3, 7, 5, 13), &dev)?)?;
        let xt = t.as_tensor().transpose(1, 2)?;
        assert!(!xt.is_contiguous());
        check(&xt, &t, &w)?;
        // A frozen weight: only dx.
        let frozen = w.as_tensor().detach();
        let y = rms_norm(x.as_tensor(), &frozen, 1e-5)?.expect("cpu f32");
        assert!(y.sum_all()?.backward()?.get(&frozen).is_none());
        assert!(plain_ops(|| rms_norm(x.as_tensor(), w.as_tensor(), 1e-5))?.is_none());
        Ok(())
    }
}
