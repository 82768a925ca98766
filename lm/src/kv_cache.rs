//! The generation KV cache: per layer, keys and values in `(B, KV, capacity, D)` buffers that
//! each step writes into in place (`slice_set`), read back as views of the filled length.
//! Concatenating a new step onto the cache instead copied the whole cache every step and layer.
use candle_core::{DType, Device, Result, Tensor};

/// Per-layer keys and values `(B, KV, S, D)` kept between generation steps.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
    /// Segment of every cached key, `(B, S)` row-major (0 = padding).
    pub(crate) key_segments: Vec<u32>,
    pub(crate) len: usize,
    /// Positions to make room for at the first step (prompt + new tokens), so a generation
    /// that stays within it never reallocates. Past it the capacity doubles.
    pub capacity_hint: usize,
}

/// One layer's buffers `(B, KV, capacity, D)`; the first `KvCache::len` positions are filled.
#[derive(Debug, Clone)]
pub(crate) struct LayerCache {
    k: Tensor,
    v: Tensor,
}

/// The shape of every layer's buffers, less the capacity: `(B, KV, D)`, dtype and device.
pub(crate) struct CacheShape<'a> {
    pub b: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub dtype: DType,
    pub device: &'a Device,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn capacity(&self) -> usize {
        self.layers.first().map_or(0, |l| l.k.dim(2).unwrap_or(0))
    }

    /// Makes room for `t` more positions in each of `layers` layers.
    pub(crate) fn reserve(&mut self, layers: usize, t: usize, shape: &CacheShape) -> Result<()> {
        let need = self.len + t;
        let cap = self.capacity();
        if need <= cap && self.layers.len() == layers {
            return Ok(());
        }
        let cap = need.max(2 * cap).max(self.capacity_hint);
        let dims = (shape.b, shape.kv_heads, cap, shape.head_dim);
        let fresh = || Tensor::zeros(dims, shape.dtype, shape.device);
        let mut grown = Vec::with_capacity(layers);
        for i in 0..layers {
            let (k, v) = (fresh()?, fresh()?);
            if let Some(old) = self.layers.get(i).filter(|_| self.len > 0) {
                k.slice_set(&old.k.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                v.slice_set(&old.v.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
            }
            grown.push(LayerCache { k, v });
        }
        self.layers = grown;
        Ok(())
    }
}

impl KvCache {
    /// Keeps only the batch rows `keep` (indices into the current batch, in order).
    pub(crate) fn keep_rows(&mut self, keep: &[usize]) -> Result<()> {
        let Some(first) = self.layers.first() else {
            return Ok(());
        };
        let rows = first.k.dim(0)?;
        let idx = Tensor::from_vec(
            keep.iter().map(|&j| j as u32).collect::<Vec<_>>(),
            keep.len(),
            first.k.device(),
        )?;
        for l in &mut self.layers {
            l.k = l.k.index_select(&idx, 0)?;
            l.v = l.v.index_select(&idx, 0)?;
        }
        let s = self.key_segments.len() / rows.max(1);
        let segs = &self.key_segments;
        self.key_segments = keep
            .iter()
            .flat_map(|&j| segs[j * s..(j + 1) * s].to_vec())
            .collect();
        Ok(())
    }
}

impl KvCache {
    /// Turns a one-row cache of a shared prefix followed by packed prompt rests into one row per
    /// prompt: `[prefix | padding | rest]`, all as long as the prefix plus the longest rest.
    /// `rests[i]` is row i's rest as (start, length) in the packed row (rows may share one). The
    /// prefix's keys become ordinary (segment 1) keys of every row.
    pub(crate) fn unpack_rows(&mut self, shared: usize, rests: &[(usize, usize)]) -> Result<()> {
        let width = rests.iter().map(|r| r.1).max().unwrap_or(0);
        for l in &mut self.layers {
            l.k = unpack(&l.k, shared, rests, width)?;
            l.v = unpack(&l.v, shared, rests, width)?;
        }
        self.key_segments = rests
            .iter()
            .flat_map(|&(_, n)| {
                let pad = std::iter::repeat_n(0, width - n);
                std::iter::repeat_n(1, shared)
                    .chain(pad)
                    .chain(std::iter::repeat_n(1, n))
            })
            .collect();
        self.len = shared + width;
        Ok(())
    }
}

/// One layer's `(1, KV, cap, D)` packed buffer -> `(B, KV, cap, D)`, see
/// [`KvCache::unpack_rows`].
fn unpack(buf: &Tensor, shared: usize, rests: &[(usize, usize)], width: usize) -> Result<Tensor> {
    let (_, kv, cap, d) = buf.dims4()?;
    let prefix = buf.narrow(2, 0, shared)?;
    let mut rows = Vec::with_capacity(rests.len());
    for &(at, n) in rests {
        let pad = Tensor::zeros((1, kv, width - n, d), buf.dtype(), buf.device())?;
        rows.push(Tensor::cat(&[&prefix, &pad, &buf.narrow(2, at, n)?], 2)?);
    }
    let out = Tensor::zeros((rests.len(), kv, cap, d), buf.dtype(), buf.device())?;
    out.slice_set(&Tensor::cat(&rows, 0)?, 2, 0)?;
    Ok(out)
}

impl LayerCache {
    /// Writes this step's `k`, `v` `(B, KV, T, D)` at position `past` and returns views of all
    /// `past + T` cached positions. Detached: the cache only serves generation, and a tracked
    /// cache would chain every step's autograd graph (with trainable weights) into the next.
    pub(crate) fn append(&self, k: &Tensor, v: &Tensor, past: usize) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        self.k.slice_set(&k.detach().contiguous()?, 2, past)?;
        self.v.slice_set(&v.detach().contiguous()?, 2, past)?;
        Ok((
            self.k.narrow(2, 0, past + t)?,
            self.v.narrow(2, 0, past + t)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_in_place_and_keeps_everything_when_it_grows() -> Result<()> {
        let dev = Device::Cpu;
        let shape = CacheShape {
            b: 2,
            kv_heads: 3,
            head_dim: 4,
            dtype: DType::F32,
            device: &dev,
        };
        let mut cache = KvCache {
            capacity_hint: 3,
            ..Default::default()
        };
        let steps: Vec<Tensor> = (0..5)
            .map(|i| Tensor::full(i as f32, (2, 3, 2, 4), &dev))
            .collect::<Result<_>>()?;
        let mut views = None;
        for (i, s) in steps.iter().enumerate() {
            cache.reserve(2, 2, &shape)?;
            let last = cache.layers[1].append(s, &(s * 2.0)?, cache.len)?;
            cache.len += 2;
            assert!(cache.capacity() >= cache.len, "step {i}");
            views = Some(last);
        }
        let (k, v) = views.expect("five steps");
        assert_eq!(k.dims(), &[2, 3, 10, 4]);
        let want = Tensor::cat(&steps, 2)?;
        let dk = (k - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let dv = (v - (want * 2.0)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!((dk, dv), (0.0, 0.0));
        Ok(())
    }
}
