//! What sampling costs (`rudder generate`, `rudder compare`): tokens, padded positions and
//! forward FLOPs of batched generation with a KV cache, fed into a [`Meter`].
//!
//! A batch of `B` rows is left-padded to its longest prompt `P`; a row leaves the batch when it
//! finishes (`lm::generate`). So the device computes `B·P` prefill positions, each attending
//! over `P`, and for row `i` `g_i` decode positions (one per new token), attending over the
//! cache: `P + g_i/2` on average.

use super::flops::{forward_flops, Flops, ModelDims};
use super::meter::Meter;

/// How [`GenerationCount::flops`] counts, for reports.
pub const GENERATION_FLOP_RULE: &str = "generation, forward only, per computed position \
(padding included): 2N + 4·L·q·T; prefill B×P positions at T = P, then g positions at \
T = P + g/2 for a row of g new tokens (B rows, P longest prompt of each batch)";

/// The rows of the batches one command generated: `(prompt tokens, generated tokens)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationCount {
    batches: Vec<Vec<(usize, usize)>>,
}

impl GenerationCount {
    /// Records one generated batch, one `(prompt, generated)` pair per row.
    pub fn add_batch(&mut self, rows: impl IntoIterator<Item = (usize, usize)>) {
        let rows: Vec<_> = rows.into_iter().collect();
        if !rows.is_empty() {
            self.batches.push(rows);
        }
    }

    fn rows(&self) -> impl Iterator<Item = &(usize, usize)> {
        self.batches.iter().flatten()
    }

    /// Rows generated.
    pub fn num_rows(&self) -> usize {
        self.rows().count()
    }

    /// New tokens generated (each row's own count, EOS included).
    pub fn generated(&self) -> u64 {
        self.rows().map(|&(_, g)| g as u64).sum()
    }

    /// Non-pad tokens: prompts plus generated.
    pub fn tokens(&self) -> u64 {
        self.rows().map(|&(p, g)| (p + g) as u64).sum()
    }

    /// Computed positions: per batch, rows × longest prompt, plus every row's new tokens.
    pub fn padded_tokens(&self) -> u64 {
        self.batches
            .iter()
            .map(|b| (b.len() * longest_prompt(b) + b.iter().map(|r| r.1).sum::<usize>()) as u64)
            .sum()
    }

    /// Forward FLOPs of the padded grids (see the module docs).
    pub fn flops(&self, dims: &ModelDims) -> Flops {
        let forward = self
            .batches
            .iter()
            .map(|b| {
                let p = longest_prompt(b) as f64;
                let decode: f64 = b
                    .iter()
                    .map(|&(_, g)| forward_flops(dims, true, g as f64, p + g as f64 / 2.0))
                    .sum();
                forward_flops(dims, true, b.len() as f64 * p, p) + decode
            })
            .sum();
        Flops {
            forward,
            backward: 0.0,
        }
    }
}

/// The longest prompt of a batch (the left-padded prefill length).
fn longest_prompt(rows: &[(usize, usize)]) -> usize {
    rows.iter().map(|r| r.0).max().unwrap_or(0)
}

impl Meter {
    /// Adds generated batches: their tokens, padded positions and, when the model's shape is
    /// known, forward FLOPs; states the generation FLOP rule.
    pub fn add_generation(&mut self, dims: Option<&ModelDims>, count: &GenerationCount) {
        let flops = dims.map(|d| count.flops(d)).unwrap_or_default();
        self.set_flop_rule(match dims {
            Some(_) => GENERATION_FLOP_RULE.into(),
            None => "model shape not given: FLOPs not counted".into(),
        });
        self.add(flops, count.tokens(), count.padded_tokens());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // flops.rs's tiny model: N = 1408 with the head, attention 64 per context token.
    use super::super::flops::tests::tiny;

    #[test]
    fn padded_grid_of_each_batch() {
        let mut c = GenerationCount::default();
        // Batch 1: prompts 3 and 5 (prefill 2 × 5), completions 4 and 2 -> 10 + 6 = 16.
        c.add_batch([(3, 4), (5, 2)]);
        // Batch 2: one row, no padding: 2 + 2.
        c.add_batch([(2, 2)]);
        c.add_batch([]);
        assert_eq!(c.num_rows(), 3);
        assert_eq!((c.generated(), c.tokens(), c.padded_tokens()), (8, 18, 20));
        // Batch 1: prefill 10 positions at T = 5, decode 4 at T = 7 and 2 at T = 6; batch 2:
        // 2 at T = 2, 2 at T = 3. Per position 2·1408 = 2816 plus 64·T.
        let f = c.flops(&tiny());
        let by_hand = 10.0 * (2816.0 + 320.0)
            + 4.0 * (2816.0 + 448.0)
            + 2.0 * (2816.0 + 384.0)
            + 2.0 * (2816.0 + 128.0)
            + 2.0 * (2816.0 + 192.0);
        assert_eq!((f.forward, f.backward), (by_hand, 0.0));
    }
}
