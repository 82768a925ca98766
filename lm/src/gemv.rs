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
use candle_core::{DType, Device, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx512;

thread_local! {
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the decoding kernels enabled on this thread, and with the model's weights read
/// through [`param`], i.e. detached from the autograd graph: a trainable policy sampling its
/// rollouts would otherwise record every prefill and step activation and keep it alive until
/// generation ends, through the cache (PPO LoRA peak 2.41 against 1.65 GB). Only generation
/// opts in: training and scoring keep one kernel (GEMM) whatever the batch size, so that e.g. a
/// policy and its reference give bit-identical log-probs from identical weights.
pub fn decoding<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            DECODING.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DECODING.with(|d| d.replace(true)));
    f()
}

/// A model tensor as a forward pass reads it: inside [`decoding`] a view of the same storage that
/// is not a variable and has no graph (`Tensor::detach`, no copy), so that nothing computed from
/// it is recorded for a backward pass that generation never runs; elsewhere the tensor itself.
/// Every weight a forward pass reads goes through this (linear layers and their adapters, norms,
/// embeddings, the head, MoE routers): one weight read directly keeps the whole graph.
pub fn param(t: &Tensor) -> Tensor {
    if DECODING.with(|d| d.get()) {
        t.detach()
    } else {
        t.clone()
    }
}

/// Whether this thread is inside [`decoding`] and CPU kernels may run on `x`.
pub(crate) fn decoding_on(x: &Tensor) -> bool {
    DECODING.with(|d| d.get()) && crate::fused::cpu_kernels(x)
}

/// Most input rows handled by this path. Up to 64 rows the tile kernel keeps ~120-150 GFLOP/s
/// on 2 cores where the GEMM's packing makes it slower (12-130 GFLOP/s for 16-64 rows of
/// SmolLM2's projections): the shared prefix and the rests of a rollout's prompts run here.
pub const MAX_ROWS: usize = 64;

/// Most rows for a weight with at least twice as many inputs as outputs (an MLP's down
/// projection), where the GEMM stays slower than the tile up to a few hundred rows
/// (109 against 134 GFLOP/s at 312 rows, 1536 -> 576).
pub const MAX_ROWS_WIDE: usize = 384;

/// Whether `rows` rows of a `(out, inner)` weight take this path.
fn rows_fit(rows: usize, out: usize, inner: usize) -> bool {
    rows <= MAX_ROWS || (inner >= 2 * out && rows <= MAX_ROWS_WIDE)
}

/// `x (rows, in) · w (out, in)ᵀ -> (rows, out)`, or `None` when this path does not apply
/// (outside [`decoding`], GPU or [`crate::fused::plain_ops`], not f32, too many rows,
/// non-contiguous weight).
pub fn try_matmul_t(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    try_matmul_t_low_rank(x, w, None)
}

/// A low-rank term `scale · (x Aᵀ) Bᵀ` (a LoRA adapter: A `(r, in)`, B `(out, r)`).
pub struct LowRank<'a> {
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub scale: f64,
}

/// [`try_matmul_t`] plus a low-rank term, added inside the same pass over the weight: while
/// decoding, an adapter's two small products, its scaling and its sum each cost a dispatch to
/// the threads and an allocation per projection and step, which made LoRA rollouts ~40% slower
/// than the same model without adapters. With more rows than the tile takes (a prompt's
/// prefill) and an adapter, three GEMM calls write straight into one buffer instead. `None`
/// also when A or B is not a contiguous f32 CPU tensor of matching shape.
pub fn try_matmul_t_low_rank(
    x: &Tensor,
    w: &Tensor,
    low: Option<LowRank<'_>>,
) -> Result<Option<Tensor>> {
    let (rows, inner) = x.dims2()?;
    let (out, w_in) = w.dims2()?;
    let applies = decoding_on(x)
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && w.is_contiguous()
        && w_in == inner;
    let tile = rows_fit(rows, out, inner);
    if !applies || (!tile && low.is_none()) {
        return Ok(None);
    }
    let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let (guard, layout) = w.storage_and_layout();
    let Some(wdata) = f32_slice(&guard, layout) else {
        return Ok(None);
    };
    let Some(low) = low else {
        let y = matmul_t(&xs, wdata, rows, inner, None);
        return Tensor::from_vec(y, (rows, out), &Device::Cpu).map(Some);
    };
    let (r, a_in) = low.a.dims2()?;
    let (b_out, b_r) = low.b.dims2()?;
    if a_in != inner || b_out != out || b_r != r {
        return Ok(None);
    }
    // A and B are read in place, as the weight is.
    let (ga, la) = low.a.storage_and_layout();
    let (gb, lb) = low.b.storage_and_layout();
    let (Some(a), Some(b)) = (f32_slice(&ga, la), f32_slice(&gb, lb)) else {
        return Ok(None);
    };
    let term = LowRankTerm {
        ax: x_at(&xs, a, rows, inner, r),
        b,
        r,
        scale: low.scale as f32,
    };
    let y = if tile {
        matmul_t(&xs, wdata, rows, inner, Some(&term))
    } else {
        gemm_t(&xs, wdata, rows, inner, &term)
    };
    Tensor::from_vec(y, (rows, out), &Device::Cpu).map(Some)
}

/// `(rows, inner) · (out, inner)ᵀ + scale · (x Aᵀ) Bᵀ` by the GEMM, row-major `(rows, out)`:
/// the product, then the low-rank term accumulated into the same buffer.
fn gemm_t(xs: &[f32], w: &[f32], rows: usize, inner: usize, l: &LowRankTerm<'_>) -> Vec<f32> {
    let out = w.len() / inner.max(1);
    let mut y = vec![0f32; rows * out];
    let par = gemm::Parallelism::Rayon(rayon::current_num_threads().max(1));
    // SAFETY: every pointer covers its whole matrix: x (rows, inner) and y (rows, out)
    // row-major; w (out, inner) row-major read as wᵀ (column stride inner, row stride 1); ax
    // (rows, r) row-major and B (out, r) read as Bᵀ alike. `y` is not aliased.
    unsafe {
        gemm::gemm(
            rows,
            out,
            inner,
            y.as_mut_ptr(),
            1,
            out as isize,
            false,
            xs.as_ptr(),
            1,
            inner as isize,
            w.as_ptr(),
            inner as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
        // y = 1 · y + scale · ax Bᵀ
        gemm::gemm(
            rows,
            out,
            l.r,
            y.as_mut_ptr(),
            1,
            out as isize,
            true,
            l.ax.as_ptr(),
            1,
            l.r as isize,
            l.b.as_ptr(),
            l.r as isize,
            1,
            1.0,
            l.scale,
            false,
            false,
            false,
            par,
        );
    }
    y
}

/// The elements of a contiguous f32 CPU tensor's storage, or `None` (this path then does not
/// apply).
fn f32_slice<'g>(storage: &'g Storage, layout: &Layout) -> Option<&'g [f32]> {
    let Storage::Cpu(s) = storage else {
        return None;
    };
    crate::fused::cpu_contiguous_f32(s, layout)
}

/// `x Aᵀ` `(rows, r)` row-major: `A · xsᵀ` `(r, rows)` through the tile kernel, transposed.
fn x_at(xs: &[f32], a: &[f32], rows: usize, inner: usize, r: usize) -> Vec<f32> {
    let mut axt = vec![0f32; r * rows];
    block_t(a, xs, rows, inner, &mut axt);
    let mut ax = vec![0f32; rows * r];
    for (j, col) in axt.chunks_exact(rows.max(1)).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            ax[i * r + j] = v;
        }
    }
    ax
}

/// The low-rank term for [`matmul_t`]: `x Aᵀ` `(rows, r)`, B `(out, r)` row-major, r, the scale.
struct LowRankTerm<'a> {
    ax: Vec<f32>,
    b: &'a [f32],
    r: usize,
    scale: f32,
}

/// `(rows, inner) · (out, inner)ᵀ` (+ the low-rank term) as a row-major `(rows, out)` vector.
fn matmul_t(
    xs: &[f32],
    w: &[f32],
    rows: usize,
    inner: usize,
    low: Option<&LowRankTerm<'_>>,
) -> Vec<f32> {
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
            if let Some(l) = low {
                // (n, rows) = B_block · (x Aᵀ)ᵀ, the same tile kernel over r inputs.
                let bb = &l.b[bi * block * l.r..(bi * block + n) * l.r];
                let mut delta = vec![0f32; n * rows];
                block_t(bb, &l.ax, rows, l.r, &mut delta);
                for (y, d) in chunk.iter_mut().zip(&delta) {
                    *y += l.scale * d;
                }
            }
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
        // A weight read through `param` while decoding records nothing for a backward pass;
        // outside, the same op is recorded.
        let doubled = decoding(|| param(v.as_tensor()) * 2.0)?;
        assert!(!doubled.track_op());
        assert!((param(v.as_tensor()) * 2.0)?.track_op());
        let plain = crate::fused::plain_ops(|| decoding(|| try_matmul_t(&x, &w)))?;
        assert!(plain.is_none(), "plain_ops: the GPU's path");
        Ok(())
    }

    /// The low-rank term added inside the pass equals `x Wᵀ + s (x Aᵀ) Bᵀ` composed from
    /// candle ops, for ranks with and without a masked tail and row counts off the tile size;
    /// a LoRA `Linear` decodes to what its training forward computes; mismatched shapes fall
    /// back (`None`).
    #[test]
    fn low_rank_term_matches_the_composed_adapter() -> Result<()> {
        let dev = Device::Cpu;
        // Decoding rows, a prompt's rest (tile up to 64 rows), a down projection's prefill
        // (tile up to 384 rows when inputs >= 2x outputs) and a longer prefill (three GEMMs).
        let shapes = [
            (8, 1536, 576, 16),
            (3, 130, 37, 5),
            (1, 64, 96, 17),
            (64, 96, 80, 4),
            (300, 40, 96, 3),
            (100, 96, 80, 4),
        ];
        for (rows, out, inner, r) in shapes {
            let x = Tensor::randn(0f32, 1.0, (rows, inner), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (out, inner), &dev)?;
            let a = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (r, inner), &dev)?)?;
            let b = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (out, r), &dev)?)?;
            let low = || LowRank {
                a: a.as_tensor(),
                b: b.as_tensor(),
                scale: 0.5,
            };
            let got = decoding(|| try_matmul_t_low_rank(&x, &w, Some(low())))?.expect("applies");
            assert!(!got.track_op(), "decoding records no graph");
            let delta = x.matmul(&a.as_tensor().t()?)?.matmul(&b.as_tensor().t()?)?;
            let want = (x.matmul(&w.t()?)? + (delta * 0.5)?)?;
            let d = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-3, "rows {rows} out {out} inner {inner} r {r}: {d}");
        }
        let x = Tensor::randn(0f32, 1.0, (2, 8), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (6, 8), &dev)?;
        let a = Tensor::randn(0f32, 1.0, (4, 7), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (6, 4), &dev)?;
        let bad = LowRank {
            a: &a,
            b: &b,
            scale: 1.0,
        };
        assert!(decoding(|| try_matmul_t_low_rank(&x, &w, Some(bad)))?.is_none());

        let mut lin = crate::linear::Linear::new(w.clone(), None);
        lin.lora = Some(crate::linear::Lora {
            a: candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 8), &dev)?)?,
            b: candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (6, 4), &dev)?)?,
            scale: 2.0,
            dropout: 0.0,
            module: 0,
        });
        let x3 = x.unsqueeze(1)?; // (B, 1, in), a decoding step
        let on = crate::linear::Adapters::ON;
        let fast = decoding(|| lin.forward(&x3, on))?;
        let slow = lin.forward(&x3, on)?;
        let d = (fast - slow)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-4, "LoRA Linear decoding vs training forward: {d}");
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
