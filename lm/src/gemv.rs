//! `x Wᵀ` for a handful of rows on the CPU (decoding): one pass over the weight.
//!
//! With 8 rows a step, decoding is bound by reading the weights. A general GEMM packs the weight
//! into panels first (a second full read and a write), which made generation 1.3x slower than
//! PyTorch's. Here the weight is streamed once: a tile of 4 weight rows is dotted with 4 input
//! rows at a time in registers (16 accumulators, half a load per FMA), and the output features
//! are split evenly over the threads. Only inside [`decoding`] (generation), which never
//! differentiates: the result is not part of the autograd graph even when the weight is a
//! trainable `Var` (a PPO policy sampling its rollouts), so trainable and frozen models decode
//! equally fast.
use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx512;

thread_local! {
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the decoding kernels enabled on this thread. Only generation opts in: training
/// and scoring keep one kernel (GEMM) whatever the batch size, so that e.g. a policy and its
/// reference give bit-identical log-probs from identical weights.
pub fn decoding<T>(f: impl FnOnce() -> T) -> T {
    let was = DECODING.with(|d| d.replace(true));
    let out = f();
    DECODING.with(|d| d.set(was));
    out
}

/// Whether this thread is inside [`decoding`] and CPU kernels may run on `x`.
pub(crate) fn decoding_on(x: &Tensor) -> bool {
    DECODING.with(|d| d.get()) && crate::fused::cpu_kernels(x)
}

/// Most input rows handled by this path; more rows amortise GEMM packing.
pub const MAX_ROWS: usize = 16;

/// `x (rows, in) · w (out, in)ᵀ -> (rows, out)`, or `None` when this path does not apply
/// (outside [`decoding`], GPU or [`crate::fused::plain_ops`], not f32, too many rows,
/// non-contiguous weight).
pub fn try_matmul_t(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let (rows, inner) = x.dims2()?;
    let applies = decoding_on(x)
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
    let y = matmul_t(&xs, wdata, rows, inner);
    drop(guard);
    Tensor::from_vec(y, (rows, out), &Device::Cpu).map(Some)
}

/// `(rows, inner) · (out, inner)ᵀ` as a row-major `(rows, out)` vector.
fn matmul_t(xs: &[f32], w: &[f32], rows: usize, inner: usize) -> Vec<f32> {
    let out = w.len() / inner.max(1);
    // About four tasks per thread, in whole tiles of 4 output features: the k/v projections
    // have only a few hundred features and must still keep every core busy.
    let threads = rayon::current_num_threads().max(1);
    let block = out.div_ceil(threads * 4).next_multiple_of(4).max(16);
    // (out, rows): each task owns `block` output features for every row.
    let mut yt = vec![0f32; out * rows];
    yt.par_chunks_mut(block * rows)
        .enumerate()
        .for_each(|(bi, chunk)| {
            let n = chunk.len() / rows;
            let wb = &w[bi * block * inner..(bi * block + n) * inner];
            block_t(wb, xs, rows, inner, chunk);
        });
    let mut y = vec![0f32; rows * out];
    for (o, ys) in yt.chunks_exact(rows).enumerate() {
        for (r, &v) in ys.iter().enumerate() {
            y[r * out + o] = v;
        }
    }
    y
}

/// `yt (n, rows) = wb (n, inner) · xs (rows, inner)ᵀ`.
fn block_t(wb: &[f32], xs: &[f32], rows: usize, inner: usize, yt: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512::available() {
            return avx512::block_t(wb, xs, rows, inner, yt);
        }
    }
    for (wrow, ys) in wb.chunks_exact(inner).zip(yt.chunks_exact_mut(rows)) {
        for (r, y) in ys.iter_mut().enumerate() {
            *y = dot(wrow, &xs[r * inner..(r + 1) * inner]);
        }
    }
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
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

    /// Every tile shape (1..=16 rows, output features not a multiple of 4, inner lengths with
    /// and without a masked tail) against a plain triple loop, in f64.
    #[test]
    fn every_tile_shape_matches_a_plain_loop() -> Result<()> {
        let dev = Device::Cpu;
        for (rows, out, inner) in [
            (1, 7, 5),
            (3, 13, 16),
            (4, 64, 33),
            (8, 130, 576),
            (16, 21, 47),
        ] {
            let x = Tensor::randn(0f32, 1.0, (rows, inner), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (out, inner), &dev)?;
            let got: Vec<Vec<f32>> = decoding(|| try_matmul_t(&x, &w))?
                .expect("applies")
                .to_vec2()?;
            let (xv, wv): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (x.to_vec2()?, w.to_vec2()?);
            for r in 0..rows {
                for o in 0..out {
                    let want: f64 = (0..inner).map(|k| f64::from(xv[r][k] * wv[o][k])).sum();
                    let d = (f64::from(got[r][o]) - want).abs();
                    assert!(
                        d < 1e-4 * inner as f64,
                        "rows {rows} out {out} inner {inner}: {d}"
                    );
                }
            }
        }
        Ok(())
    }
}
