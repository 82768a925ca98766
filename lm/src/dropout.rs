//! Dropout on LoRA adapters' input (PEFT's `lora_dropout`), with masks that are a pure function
//! of a key.
//!
//! The training loop sets the key of a micro-batch's forward and backward ([`training_key`],
//! derived from the seed, the optimizer step and the micro-batch) for the thread that runs
//! them, as PyTorch's grad mode is per thread: no stage has to pass it to its models, so none
//! can forget to. Each adapter draws its mask
//! from that key, its module number and the element's index with a counter-based generator
//! (SplitMix64 over the counter). Nothing is carried from one draw to the next, so:
//! - an activation-checkpointed layer recomputed in the backward pass draws the very masks of
//!   its first forward (the gradient is that of the forward that was run);
//! - a run resumed from a checkpoint draws the masks the uninterrupted run drew at that step;
//! - masks do not depend on how many threads or forwards ran before.
//!
//! Without a key (evaluation, scoring, generation) adapters run without dropout, as PEFT's do
//! under `model.eval()`.
use candle_core::{DType, Device, Result, Shape, Tensor};
use rayon::prelude::*;
use std::cell::Cell;

thread_local! {
    /// The key of the training micro-batch this thread is computing, if any.
    static KEY: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Training mode for adapter dropout on this thread until the guard is dropped: forwards run
/// their adapters with masks derived from `key` (`None`: evaluation mode). The previous key
/// comes back on drop, so an early return cannot leave evaluation forwards dropping inputs.
pub fn training_key(key: Option<u64>) -> KeyGuard {
    KeyGuard(KEY.with(|k| k.replace(key)))
}

/// The key of the current training micro-batch on this thread (see [`training_key`]).
pub fn current_key() -> Option<u64> {
    KEY.with(Cell::get)
}

/// Restores the previous key when dropped (see [`training_key`]).
#[must_use = "the key is reset when the guard is dropped"]
pub struct KeyGuard(Option<u64>);

impl Drop for KeyGuard {
    fn drop(&mut self) {
        KEY.with(|k| k.set(self.0));
    }
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective mix of all 64 bits.
pub fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The inverted-dropout mask for adapter `module` under `key`: each element is 0 with
/// probability `p` and `1 / (1 - p)` otherwise (so the expected input is unchanged), like
/// `torch.nn.Dropout` in training mode.
pub fn mask(
    key: u64,
    module: u64,
    shape: &Shape,
    p: f64,
    dtype: DType,
    dev: &Device,
) -> Result<Tensor> {
    let n = shape.elem_count();
    // The stream of element i is SplitMix64's i-th output from a state seeded by key and module.
    let base = mix64(key ^ mix64(module.wrapping_add(GOLDEN)));
    // Keep when the 53-bit uniform is >= p: compare integers, no float per element.
    let cut = (p * (1u64 << 53) as f64).ceil() as u64;
    let keep = (1.0 / (1.0 - p)) as f32;
    let mut values = vec![0f32; n];
    const CHUNK: usize = 1 << 14;
    values
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (j, v) in chunk.iter_mut().enumerate() {
                let i = (c * CHUNK + j) as u64;
                let u = mix64(base.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN))) >> 11;
                *v = if u >= cut { keep } else { 0.0 };
            }
        });
    Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(key: u64, module: u64, p: f64) -> Vec<f32> {
        mask(key, module, &(64, 512).into(), p, DType::F32, &Device::Cpu)
            .and_then(|m| m.flatten_all()?.to_vec1())
            .expect("mask")
    }

    #[test]
    fn masks_drop_about_p_and_rescale_the_rest() {
        for p in [0.05, 0.1, 0.5] {
            let v = values(7, 3, p);
            let dropped = v.iter().filter(|&&x| x == 0.0).count() as f64 / v.len() as f64;
            // 32,768 draws: the standard error of the fraction is below 0.003.
            assert!((dropped - p).abs() < 0.015, "p {p}: dropped {dropped}");
            let keep = (1.0 / (1.0 - p)) as f32;
            assert!(v.iter().all(|&x| x == 0.0 || x == keep), "p {p}");
        }
        assert!(values(7, 3, 0.0).iter().all(|&x| x == 1.0));
    }

    #[test]
    fn a_mask_is_a_function_of_key_and_module_only() {
        assert_eq!(values(11, 5, 0.3), values(11, 5, 0.3));
        assert_ne!(values(11, 5, 0.3), values(12, 5, 0.3));
        assert_ne!(values(11, 5, 0.3), values(11, 6, 0.3));
        // Neighbouring modules' masks are not shifted copies of each other.
        let (a, b) = (values(11, 5, 0.5), values(11, 6, 0.5));
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64;
        assert!((same - 0.5).abs() < 0.02, "agreement {same}");
    }
}
