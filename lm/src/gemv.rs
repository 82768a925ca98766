//! `x Wᵀ` for a handful of rows on the CPU (decoding): one pass over the weight.
//!
//! With 8 rows a step, decoding is bound by reading the weights. A general GEMM packs the weight
//! into panels first (a second full read and a write), which made generation 1.3x slower than
//! PyTorch's. Here every weight row is read once and dotted with all input rows while it is in
//! L1. Only inside [`decoding`] (generation), which never differentiates: the result is not part
//! of the autograd graph even when the weight is a trainable `Var` (a PPO policy sampling its
//! rollouts), so trainable and frozen models decode equally fast.
use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use rayon::prelude::*;

thread_local! {
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the decoding kernel enabled on this thread. Only generation opts in: training
/// and scoring keep one kernel (GEMM) whatever the batch size, so that e.g. a policy and its
/// reference give bit-identical log-probs from identical weights.
pub fn decoding<T>(f: impl FnOnce() -> T) -> T {
    let was = DECODING.with(|d| d.replace(true));
    let out = f();
    DECODING.with(|d| d.set(was));
    out
}

/// Most input rows handled by this path; more rows amortise GEMM packing.
pub const MAX_ROWS: usize = 16;

/// Output features per parallel task: large enough to amortise scheduling.
const BLOCK: usize = 256;

/// `x (rows, in) · w (out, in)ᵀ -> (rows, out)`, or `None` when this path does not apply
/// (outside [`decoding`], GPU or [`crate::fused::plain_ops`], not f32, too many rows,
/// non-contiguous weight).
pub fn try_matmul_t(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let (rows, inner) = x.dims2()?;
    let applies = DECODING.with(|d| d.get())
        && crate::fused::cpu_kernels(x)
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && rows <= MAX_ROWS
        && w.is_contiguous();
    if !applies {
        return Ok(None);
    }
    let (out, w_in) = w.dims2()?;
    if w_in != inner {
        return Ok(None);
    }
    let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let (guard, layout) = w.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*guard else {
        return Ok(None);
    };
    let wdata = &data[layout.start_offset()..layout.start_offset() + out * inner];
    // (out, rows): each task owns BLOCK output features for every row.
    let mut yt = vec![0f32; out * rows];
    yt.par_chunks_mut(BLOCK * rows)
        .enumerate()
        .for_each(|(bi, chunk)| {
            let o0 = bi * BLOCK;
            for (k, ys) in chunk.chunks_mut(rows).enumerate() {
                let wrow = &wdata[(o0 + k) * inner..(o0 + k + 1) * inner];
                for (r, y) in ys.iter_mut().enumerate() {
                    *y = dot(wrow, &xs[r * inner..(r + 1) * inner]);
                }
            }
        });
    drop(guard);
    let yt = Tensor::from_vec(yt, (out, rows), &Device::Cpu)?;
    Ok(Some(yt.t()?.contiguous()?))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features enabled on `dot_fma`.
            return unsafe { dot_fma(a, b) };
        }
    }
    dot_plain(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    dot_plain(a, b)
}

/// 32 independent lanes (four 8-wide FMA chains) so the compiler vectorises without
/// reassociating one sum and the FMA latency is hidden.
#[inline(always)]
fn dot_plain(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 32];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..32 {
            acc[j] = x[j].mul_add(y[j], acc[j]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_gemm_while_decoding_only() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (5, 37), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (600, 37), &dev)?;
        assert!(try_matmul_t(&x, &w)?.is_none(), "only while decoding");
        let fast = decoding(|| try_matmul_t(&x, &w))?.expect("applies");
        let want = x.matmul(&w.t()?)?;
        let d = (fast - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-4, "{d}");
        // A trainable weight decodes through it too; the result carries no gradient.
        let v = candle_core::Var::from_tensor(&w)?;
        let y = decoding(|| try_matmul_t(&x, v.as_tensor()))?.expect("applies to a Var");
        assert!(!y.track_op());
        let plain = crate::fused::plain_ops(|| decoding(|| try_matmul_t(&x, &w)))?;
        assert!(plain.is_none(), "plain_ops: the GPU's path");
        Ok(())
    }
}
