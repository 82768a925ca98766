//! Attention of a few new positions over the KV cache on the CPU (decoding), in one pass.
//!
//! The composed path copies the whole cache every step and layer: `repeat_kv` materialises the
//! grouped heads, `kᵀ` is made contiguous, and each of the B·H tiny batched matmuls pays a
//! dispatch. Here each (row, head) task reads its key/value head straight from the cache buffer
//! (any strides, so a view of a preallocated buffer is read in place) and writes
//! `softmax(q kᵀ · scale + mask) v` into the `(B, T, H·D)` layout the output projection takes.
//! Only inside [`crate::gemv::decoding`]: nothing here is differentiable.
use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

/// Most query positions per call: prefill of a long prompt is a GEMM's job.
const MAX_QUERIES: usize = 64;

/// Mask values at or below this hide a key (the mask holds 0 or `ops::mask_value`, about -1.7e38
/// in f32 and -65504 in f16).
const HIDDEN: f32 = -60000.0;

/// A strided `(B, KV, S, D)` tensor borrowed from CPU storage.
struct Heads<'a> {
    data: &'a [f32],
    layout: &'a Layout,
}

impl Heads<'_> {
    /// Position `s` of head `g` in row `b`: `D` contiguous values.
    fn at(&self, b: usize, g: usize, s: usize, d: usize) -> &[f32] {
        let st = self.layout.stride();
        let o = self.layout.start_offset() + b * st[0] + g * st[1] + s * st[2];
        &self.data[o..o + d]
    }
}

/// q `(B, H, Tq, D)`, k and v `(B, KV, S, D)`, additive mask `(B, 1, Tq, S)` -> `(B, Tq, H·D)`,
/// or `None` where this path does not apply (outside decoding, GPU, not f32, too many queries,
/// a strided last dimension).
pub(crate) fn try_attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Option<Tensor>> {
    let (b, h, tq, d) = q.dims4()?;
    let (_, kvh, s, _) = k.dims4()?;
    let f32s = [q, k, v, mask].iter().all(|t| t.dtype() == DType::F32);
    let unit = |t: &Tensor| t.layout().stride().last() == Some(&1);
    if !crate::gemv::decoding_on(q) || !f32s || tq > MAX_QUERIES || !unit(k) || !unit(v) {
        return Ok(None);
    }
    let qs: Vec<f32> = q.flatten_all()?.to_vec1()?;
    let ms: Vec<f32> = mask.flatten_all()?.to_vec1()?;
    let (kg, kl) = k.storage_and_layout();
    let (vg, vl) = v.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(kd)), Storage::Cpu(CpuStorage::F32(vd))) = (&*kg, &*vg)
    else {
        return Ok(None);
    };
    let (keys, values) = (
        Heads {
            data: kd,
            layout: kl,
        },
        Heads {
            data: vd,
            layout: vl,
        },
    );
    let group = h / kvh.max(1);
    // One task per (row, head): its (Tq, D) outputs.
    let heads: Vec<Vec<f32>> = (0..b * h)
        .into_par_iter()
        .map(|bh| {
            let (bi, hi) = (bh / h, bh % h);
            let q = &qs[bh * tq * d..(bh + 1) * tq * d];
            let mask = &ms[bi * tq * s..(bi + 1) * tq * s];
            let kv = (&keys, &values, bi, hi / group);
            attend_head(q, mask, kv, s, d, scale as f32)
        })
        .collect();
    drop((kg, vg));
    // (B, H, Tq, D) -> (B, Tq, H·D)
    let mut out = vec![0f32; b * tq * h * d];
    for (bh, y) in heads.iter().enumerate() {
        let (bi, hi) = (bh / h, bh % h);
        for (t, yt) in y.chunks_exact(d).enumerate() {
            let o = ((bi * tq + t) * h + hi) * d;
            out[o..o + d].copy_from_slice(yt);
        }
    }
    Tensor::from_vec(out, (b, tq, h * d), &Device::Cpu).map(Some)
}

/// `softmax(q kᵀ · scale + mask) v` for one head: q `(Tq, D)`, mask `(Tq, S)` -> `(Tq, D)`.
fn attend_head(
    q: &[f32],
    mask: &[f32],
    (keys, values, b, g): (&Heads, &Heads, usize, usize),
    s: usize,
    d: usize,
    scale: f32,
) -> Vec<f32> {
    let mut out = vec![0f32; q.len()];
    let mut p = vec![0f32; s];
    for (t, (qt, yt)) in q.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
        let mt = &mask[t * s..(t + 1) * s];
        // A masked key's weight underflows to exactly 0 once any key is visible: skip its dot
        // product (half the keys of a causal prefill, and the padding). A row with no visible
        // key (a padding query) keeps the full computation.
        let any_visible = mt.iter().any(|&m| m > HIDDEN);
        for (j, pj) in p.iter_mut().enumerate() {
            *pj = if any_visible && mt[j] <= HIDDEN {
                f32::NEG_INFINITY
            } else {
                crate::gemv::dot(qt, keys.at(b, g, j, d)) * scale + mt[j]
            };
        }
        let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for pj in p.iter_mut() {
            *pj = (*pj - max).exp();
            sum += *pj;
        }
        let inv = 1.0 / sum;
        for (j, &pj) in p.iter().enumerate() {
            if pj == 0.0 {
                continue;
            }
            let w = pj * inv;
            for (y, &x) in yt.iter_mut().zip(values.at(b, g, j, d)) {
                *y += w * x;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemv::decoding;

    /// Grouped heads, a strided cache view (a narrowed buffer), a padded key, future keys
    /// (skipped) and a padding query (nothing visible), against the composed ops.
    #[test]
    fn matches_composed_attention_over_a_strided_cache() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, kvh, tq, s, d, cap) = (2, 6, 2, 3, 9, 16, 12);
        let q = Tensor::randn(0f32, 1.0, (b, h, tq, d), &dev)?;
        let kbuf = Tensor::randn(0f32, 1.0, (b, kvh, cap, d), &dev)?;
        let vbuf = Tensor::randn(0f32, 1.0, (b, kvh, cap, d), &dev)?;
        let (k, v) = (kbuf.narrow(2, 0, s)?, vbuf.narrow(2, 0, s)?);
        assert!(!k.is_contiguous());
        // Row 1's first key is padding; row 0's first query is padding (no key visible: the
        // full, uniform computation).
        let segs: Vec<u32> = (0..b * s).map(|i| u32::from(i != s)).collect();
        let qsegs = [0, 1, 1, 1, 1, 1];
        let mask = crate::ops::attention_mask(&qsegs, &segs, b, tq, s, DType::F32, &dev)?;
        let scale = 1.0 / (d as f64).sqrt();
        let got = decoding(|| try_attend(&q, &k, &v, &mask, scale))?.expect("applies");
        let (kr, vr) = (crate::ops::repeat_kv(&k, 3)?, crate::ops::repeat_kv(&v, 3)?);
        let scores = (q.matmul(&kr.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let want = probs
            .matmul(&vr)?
            .transpose(1, 2)?
            .reshape((b, tq, h * d))?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        assert!(
            try_attend(&q, &k, &v, &mask, scale)?.is_none(),
            "only while decoding"
        );
        Ok(())
    }
}
