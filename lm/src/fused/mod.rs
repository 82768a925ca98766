//! Fused CPU kernels with analytic backwards: fewer passes over memory and fewer intermediate
//! tensors kept for the backward pass than the same op composed from primitives.
use candle_core::{CpuStorage, Device, Layout, Result, Storage, Tensor};
use std::cell::Cell;

mod frozen;
mod norm;
mod rope;
mod softmax;
mod swiglu;

pub use frozen::frozen_matmul_t;
pub use norm::rms_norm;
pub use rope::rope;
pub use softmax::{logsumexp_last, masked_softmax, softmax_last};
pub use swiglu::swiglu;

thread_local! {
    static PLAIN: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every CPU-only kernel (this module's fused ops and the decoding GEMV of
/// [`crate::gemv`]) turned off on this thread, so the CPU takes the path of plain candle ops
/// that a GPU takes. Tests use it to check that both paths give the same numbers.
pub fn plain_ops<T>(f: impl FnOnce() -> T) -> T {
    let was = PLAIN.with(|p| p.replace(true));
    let out = f();
    PLAIN.with(|p| p.set(was));
    out
}

/// Whether a CPU-only kernel may run on `x`: it lives on the CPU and [`plain_ops`] is not on.
/// Every custom op checks this, so GPU tensors always take plain candle ops.
pub(crate) fn cpu_kernels(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && !PLAIN.with(|p| p.get())
}

/// Elements one rayon task handles in the element-wise kernels: enough that scheduling costs
/// nothing next to the work, few enough that both cores get a share of small tensors.
const GRAIN: usize = 1 << 14;

/// Rows of `len` elements per rayon task (at least one).
fn rows_per_task(len: usize) -> usize {
    (GRAIN / len.max(1)).max(1)
}

/// The f32 elements of a contiguous storage, or `None` (not f32, or strided).
pub(crate) fn cpu_contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Option<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        return None;
    };
    let (start, end) = l.contiguous_offsets()?;
    data.get(start..end)
}

/// The f32 elements of a contiguous storage, as a custom op's `cpu_fwd` receives it.
fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    match cpu_contiguous_f32(s, l) {
        Some(x) => Ok(x),
        None => candle_core::bail!("{op}: contiguous f32 input only"),
    }
}

/// Runs `f` on the f32 elements of a CPU tensor (made contiguous first if it is not): the
/// backward passes read their operands this way instead of composing candle ops.
fn with_f32<T>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<T>) -> Result<T> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(s) = &*storage else {
        candle_core::bail!("fused kernels run on the CPU only");
    };
    f(contiguous_f32(s, layout, "fused")?)
}

/// Σ aᵢbᵢ: the decoding kernels' vectorised dot (runtime-selected FMA).
use crate::gemv::dot;

/// Largest |a − b| over all elements (tests).
#[cfg(test)]
fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}
