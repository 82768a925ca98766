//! Deterministic, resumable data order: one seeded shuffle per epoch.

use serde::{Deserialize, Serialize};

/// SplitMix64: tiny, fast and fully specified here, so the data order never changes
/// with a dependency upgrade (`rand`'s shuffles are not value-stable across versions).
/// Its whole state is one `u64`, which makes it trivial to checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitMix64 {
    pub state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by rejection so there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The permutation of `0..n` used in `epoch` (Fisher–Yates). It depends only on
/// `(seed, epoch)`, so a resumed run rebuilds it from the checkpointed epoch.
pub fn epoch_permutation(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Position in the data stream: `offset` examples of epoch `epoch` consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: usize,
    pub offset: usize,
}

/// Hands out micro-batches of example indices, epoch after epoch.
///
/// A micro-batch never crosses an epoch boundary: the last one of an epoch may be
/// smaller than `batch_size`.
#[derive(Clone, Debug)]
pub struct DataOrder {
    n: usize,
    batch_size: usize,
    seed: u64,
    max_epochs: Option<usize>,
    pos: DataPosition,
    perm: Vec<usize>,
}

impl DataOrder {
    /// `max_epochs = None` cycles forever (for `max_steps`-driven runs).
    pub fn new(n: usize, batch_size: usize, seed: u64, max_epochs: Option<usize>) -> Self {
        Self {
            n,
            batch_size: batch_size.max(1),
            seed,
            max_epochs,
            pos: DataPosition::default(),
            perm: epoch_permutation(n, seed, 0),
        }
    }

    /// Jumps to a checkpointed position.
    pub fn seek(&mut self, pos: DataPosition) {
        if pos.epoch != self.pos.epoch {
            self.perm = epoch_permutation(self.n, self.seed, pos.epoch);
        }
        self.pos = pos;
    }

    pub fn position(&self) -> DataPosition {
        self.pos
    }

    /// Fractional epoch, for logs.
    pub fn epoch_f64(&self) -> f64 {
        self.pos.epoch as f64 + self.pos.offset as f64 / self.n.max(1) as f64
    }

    /// Micro-batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.n.div_ceil(self.batch_size)
    }

    /// The next micro-batch, or `None` once `max_epochs` are used up (or `n == 0`).
    pub fn next_batch(&mut self) -> Option<Vec<usize>> {
        if self.n == 0 {
            return None;
        }
        if self.pos.offset >= self.n {
            self.seek(DataPosition {
                epoch: self.pos.epoch + 1,
                offset: 0,
            });
        }
        if self.max_epochs.is_some_and(|m| self.pos.epoch >= m) {
            return None;
        }
        let end = (self.pos.offset + self.batch_size).min(self.n);
        let batch = self.perm[self.pos.offset..end].to_vec();
        self.pos.offset = end;
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_seeded_and_complete() {
        let a = epoch_permutation(50, 7, 0);
        assert_eq!(a, epoch_permutation(50, 7, 0));
        assert_ne!(a, epoch_permutation(50, 7, 1));
        assert_ne!(a, epoch_permutation(50, 8, 0));
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn batches_cover_epochs_and_resume_exactly() {
        let mut d = DataOrder::new(5, 2, 1, Some(2));
        assert_eq!(d.batches_per_epoch(), 3);
        let sizes: Vec<usize> = std::iter::from_fn(|| d.next_batch())
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, [2, 2, 1, 2, 2, 1]);

        let mut straight = DataOrder::new(5, 2, 1, None);
        let mut resumed = DataOrder::new(5, 2, 1, None);
        let first: Vec<_> = (0..4).map(|_| straight.next_batch()).collect();
        assert!(first.iter().all(Option::is_some));
        resumed.seek(straight.position());
        for _ in 0..7 {
            assert_eq!(straight.next_batch(), resumed.next_batch());
        }
        assert!(DataOrder::new(0, 2, 1, None).next_batch().is_none());
    }
}
