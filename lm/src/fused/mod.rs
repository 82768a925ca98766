//! Fused CPU kernels with analytic backwards: fewer passes over memory and fewer intermediate
//! tensors kept for the backward pass than the same op composed from primitives.
use candle_core::{Device, Tensor};
use std::cell::Cell;

mod frozen;
mod softmax;

pub use frozen::frozen_matmul_t;
pub use softmax::softmax_last;

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

