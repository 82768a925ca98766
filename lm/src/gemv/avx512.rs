//! The AVX-512 tile of the decoding GEMV: `MW` weight rows × `MX` input rows accumulated in
//! `MW·MX` registers of 16 lanes, so each loaded vector feeds several FMAs (a plain dot per
//! pair loads two vectors per FMA and was load-bound).
use std::arch::x86_64::*;

/// Whether the CPU has AVX-512F (checked once; std caches the answer).
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// `yt (n, rows) = wb (n, inner) · xs (rows, inner)ᵀ`; the caller checked [`available`].
pub(super) fn block_t(wb: &[f32], xs: &[f32], rows: usize, inner: usize, yt: &mut [f32]) {
    let n = wb.len() / inner.max(1);
    let mut o = 0;
    while o < n {
        let mw = (n - o).min(4);
        let mut r = 0;
        while r < rows {
            let mx = (rows - r).min(4);
            let w = &wb[o * inner..(o + mw) * inner];
            let x = &xs[r * inner..(r + mx) * inner];
            let mut y = [[0f32; 4]; 4];
            // SAFETY: AVX-512F is present (`available`), and `w`/`x` hold exactly `mw`/`mx`
            // rows of `inner` values, which is all `tile` reads.
            unsafe {
                match (mw, mx) {
                    (4, 4) => tile::<4, 4>(w, x, inner, &mut y),
                    (4, 3) => tile::<4, 3>(w, x, inner, &mut y),
                    (4, 2) => tile::<4, 2>(w, x, inner, &mut y),
                    (4, _) => tile::<4, 1>(w, x, inner, &mut y),
                    (3, _) => tile_rows::<3>(w, x, mx, inner, &mut y),
                    (2, _) => tile_rows::<2>(w, x, mx, inner, &mut y),
                    _ => tile_rows::<1>(w, x, mx, inner, &mut y),
                }
            }
            for i in 0..mw {
                yt[(o + i) * rows + r..(o + i) * rows + r + mx].copy_from_slice(&y[i][..mx]);
            }
            r += mx;
        }
        o += mw;
    }
}

/// The last (fewer than 4) weight rows of a block, one input row at a time.
#[target_feature(enable = "avx512f")]
unsafe fn tile_rows<const MW: usize>(
    w: &[f32],
    x: &[f32],
    mx: usize,
    inner: usize,
    y: &mut [[f32; 4]; 4],
) {
    for j in 0..mx {
        let mut one = [[0f32; 4]; 4];
        tile::<MW, 1>(w, &x[j * inner..(j + 1) * inner], inner, &mut one);
        for i in 0..MW {
            y[i][j] = one[i][0];
        }
    }
}

/// How far ahead of the tile's current weight position to prefetch, in blocks of 4 rows.
const PREFETCH_BLOCKS: usize = 1;

/// `y[i][j] = w_i · x_j` for `MW` rows of `w` and `MX` rows of `x`, each `inner` long.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const MW: usize, const MX: usize>(
    w: &[f32],
    x: &[f32],
    inner: usize,
    y: &mut [[f32; 4]; 4],
) {
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); MX]; MW];
    let mut k = 0;
    // The weights come from memory once per decoding step; asking now for the lines this
    // tile's rows will need `PREFETCH_BLOCKS` tiles later (the next weight rows) overlaps that
    // read with this tile's FMAs instead of stalling on it at the next tile's start. Prefetches
    // past the end of the weight are dropped by the CPU (a hint, never a fault).
    let pf = wp.wrapping_add(PREFETCH_BLOCKS * 4 * inner);
    while k + 16 <= inner {
        for i in 0..MW {
            _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add(i * inner + k) as *const i8);
        }
        let mut xv = [_mm512_setzero_ps(); MX];
        for (j, v) in xv.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(xp.add(j * inner + k));
        }
        for (i, a) in acc.iter_mut().enumerate() {
            let wv = _mm512_loadu_ps(wp.add(i * inner + k));
            for (aj, xj) in a.iter_mut().zip(&xv) {
                *aj = _mm512_fmadd_ps(wv, *xj, *aj);
            }
        }
        k += 16;
    }
    if k < inner {
        // Masked tail: lanes past `inner` read nothing and contribute zero.
        let m: __mmask16 = ((1u32 << (inner - k)) - 1) as u16;
        for (i, a) in acc.iter_mut().enumerate() {
            let wv = _mm512_maskz_loadu_ps(m, wp.add(i * inner + k));
            for (j, aj) in a.iter_mut().enumerate() {
                let xv = _mm512_maskz_loadu_ps(m, xp.add(j * inner + k));
                *aj = _mm512_fmadd_ps(wv, xv, *aj);
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        for (j, aj) in a.iter().enumerate() {
            y[i][j] = _mm512_reduce_add_ps(*aj);
        }
    }
}
