//! Rotary position embedding (transformers' `rotate_half` layout) in one pass.
use super::{cpu_kernels, rows_per_task, with_f32};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Rotates `x` `(B, H, T, D)` by the angles whose cos/sin tables `(B, 1, T, D/2)` it holds:
/// `o1 = x1·cos − s·x2·sin`, `o2 = x2·cos + s·x1·sin` with `s = sign`. The tables are constants
/// (positions get no gradient); the backward is the inverse rotation, the same op with the
/// sign flipped. The input is read through its strides (the heads of a projection, transposed),
/// so no contiguous copy of q/k is made first; the output is contiguous.
struct Rope {
    cos: Tensor,
    sin: Tensor,
    sign: f32,
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rudder-rope"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("rudder-rope: f32 only");
        };
        let (stride, start) = (layout.stride(), layout.start_offset());
        let &[b, h, t, d] = layout.dims() else {
            candle_core::bail!("rudder-rope: (B, H, T, D) input, got {:?}", layout.dims());
        };
        if stride[3] != 1 || d % 2 != 0 || self.cos.dims() != [b, 1, t, d / 2] {
            candle_core::bail!("rudder-rope: unit last stride and (B, 1, T, D/2) tables");
        }
        let mut out = vec![0f32; b * h * t * d];
        with_f32(&self.cos, |cos| {
            with_f32(&self.sin, |sin| {
                out.par_chunks_mut(d)
                    .enumerate()
                    .with_min_len(rows_per_task(d))
                    .for_each(|(row, o)| {
                        let (bi, hi, ti) = (row / (h * t), row / t % h, row % t);
                        let src = start + bi * stride[0] + hi * stride[1] + ti * stride[2];
                        let at = (bi * t + ti) * (d / 2)..(bi * t + ti + 1) * (d / 2);
                        let (c, s) = (&cos[at.clone()], &sin[at]);
                        rotate(o, &data[src..src + d], c, s, self.sign);
                    });
                Ok(())
            })
        })?;
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let inverse = Rope {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            sign: -self.sign,
        };
        unit_last_stride(dy)?.apply_op1_no_bwd(&inverse).map(Some)
    }
}

/// One row: `o1 = x1·cos − s·x2·sin`, `o2 = x2·cos + s·x1·sin` (`s` is ±1, so exact).
fn rotate(o: &mut [f32], x: &[f32], cos: &[f32], sin: &[f32], s: f32) {
    let half = cos.len();
    let (x1, x2) = x.split_at(half);
    let (o1, o2) = o.split_at_mut(half);
    for i in 0..half {
        o1[i] = x1[i] * cos[i] - s * x2[i] * sin[i];
        o2[i] = x2[i] * cos[i] + s * x1[i] * sin[i];
    }
}

/// `x` itself when its rows are contiguous (the kernel reads any other stride), else a copy.
fn unit_last_stride(x: &Tensor) -> Result<Tensor> {
    match x.stride().last() {
        Some(1) => Ok(x.clone()),
        _ => x.contiguous(),
    }
}

/// RoPE through [`Rope`] for f32 CPU tensors `x` `(B, H, T, D)` with `(B, 1, T, D/2)` tables,
/// `None` elsewhere (the caller composes it).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Option<Tensor>> {
    let fits = cpu_kernels(x)
        && [x.dtype(), cos.dtype(), sin.dtype()] == [DType::F32; 3]
        && x.rank() == 4
        && x.dim(3)? % 2 == 0
        && cos.dims() == [x.dim(0)?, 1, x.dim(2)?, x.dim(3)? / 2]
        && sin.dims() == cos.dims();
    if !fits {
        return Ok(None);
    }
    let op = Rope {
        cos: cos.contiguous()?,
        sin: sin.contiguous()?,
        sign: 1.0,
    };
    unit_last_stride(x)?.apply_op1(op).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::{max_diff, plain_ops};
    use candle_core::{Device, Var};

    #[test]
    fn fused_rope_matches_composed_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, t, d) = (3, 5, 7, 10);
        let positions: Vec<u32> = (0..(b * t) as u32).map(|p| p * 3 % 11).collect();
        let inv_freq: Vec<f32> = (0..d / 2).map(|i| 1.0 / 7f32.powi(i as i32)).collect();
        let (cos, sin) = crate::ops::rope_tables(&inv_freq, 1.0, &positions, b, t, &dev)?;
        // x as attention builds it: (B, T, H, D) heads transposed to (B, H, T, D).
        let raw = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, t, h, d), &dev)?)?;
        let strided = raw.as_tensor().transpose(1, 2)?;
        let contiguous = Var::from_tensor(&strided.contiguous()?)?;
        let up = Tensor::randn(0f32, 1.0, (b, h, t, d), &dev)?;
        for (x, var) in [
            (&strided, raw.as_tensor()),
            (contiguous.as_tensor(), contiguous.as_tensor()),
        ] {
            let fused = rope(x, &cos, &sin)?.expect("cpu f32");
            assert!(fused.is_contiguous());
            let composed = plain_ops(|| crate::ops::rope(x, &cos, &sin))?;
            assert!(max_diff(&fused, &composed)? < 1e-5, "forward");
            let g1 = (fused * &up)?.sum_all()?.backward()?;
            let g2 = (composed * &up)?.sum_all()?.backward()?;
            let d = max_diff(g1.get(var).expect("dx"), g2.get(var).expect("dx"))?;
            assert!(d < 1e-5, "dx differs by {d}");
        }
        // A strided output gradient: rotate the transposed view back.
        let dy = Tensor::randn(0f32, 1.0, (b, t, h, d), &dev)?.transpose(1, 2)?;
        let y = rope(&strided, &cos, &sin)?.expect("cpu f32");
        let back = Rope {
            cos: cos.clone(),
            sin: sin.clone(),
            sign: -1.0,
        };
        let round = y.apply_op1_no_bwd(&back)?;
        assert!(max_diff(&round, &strided)? < 1e-5, "inverse rotation");
        let g = plain_ops(|| crate::ops::rope(&dy, &cos, &sin))?;
        assert!(max_diff(&rope(&dy, &cos, &sin)?.expect("f32"), &g)? < 1e-5);
        assert!(plain_ops(|| rope(&strided, &cos, &sin))?.is_none());
        Ok(())
    }
}
