//! Logits processors and sampling, in transformers' order: repetition penalty, temperature,
//! top-k, top-p, then a draw from the seeded generator (or the argmax when greedy).
use crate::generate::SamplingConfig;
use rand::{rngs::StdRng, Rng};

/// Applies the logits processors in transformers' order and returns the sampling distribution
/// as `(token, probability)` pairs, most likely first.
pub fn distribution(logits: &mut [f32], seen: &[u32], cfg: &SamplingConfig) -> Vec<(u32, f32)> {
    if cfg.repetition_penalty != 1.0 {
        apply_penalty(logits, seen, cfg.repetition_penalty);
    }
    let temp = if cfg.temperature > 0.0 {
        cfg.temperature
    } else {
        1.0
    };
    let mut idx: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, l / temp))
        .collect();
    // Most likely first, ties by token id; with top-k, select the k first so only they are sorted.
    if cfg.top_k > 0 && cfg.top_k < idx.len() {
        idx.select_nth_unstable_by(cfg.top_k - 1, order);
        idx.truncate(cfg.top_k);
    }
    let max = idx.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
    let total: f64 = idx.iter().map(|x| f64::from((x.1 - max).exp())).sum();
    if cfg.top_p < 1.0 {
        nucleus_candidates(&mut idx, max, total, cfg.top_p);
    }
    idx.sort_unstable_by(order);
    for x in idx.iter_mut() {
        x.1 = (f64::from((x.1 - max).exp()) / total) as f32;
    }
    if cfg.top_p < 1.0 {
        // Keep tokens until the cumulative probability reaches top_p (at least one).
        let mut cum = 0f32;
        let keep = idx
            .iter()
            .position(|x| {
                cum += x.1;
                cum >= cfg.top_p
            })
            .map(|p| p + 1)
            .unwrap_or(idx.len());
        idx.truncate(keep.max(1));
        let s: f32 = idx.iter().map(|x| x.1).sum();
        idx.iter_mut().for_each(|x| x.1 /= s);
    }
    idx
}

/// Most likely first, ties by token id.
fn order(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Cuts `idx` (scaled logits) down to its most likely tokens, unordered, keeping at least the
/// top-p nucleus: selecting k candidates is linear, so the vocabulary is never sorted whole
/// (that dominated sampling time). `max` and `total` give the softmax of the full set.
fn nucleus_candidates(idx: &mut Vec<(u32, f32)>, max: f32, total: f64, top_p: f32) {
    // A margin over top_p so that the f32 cumulative sum of the caller finds the cut inside.
    let need = f64::from(top_p) + 1e-4;
    let mut k = 256;
    while k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
        let mass: f64 = idx[..k].iter().map(|x| f64::from((x.1 - max).exp())).sum();
        if mass / total >= need {
            idx.truncate(k);
            return;
        }
        k *= 4;
    }
}

/// CTRL's repetition penalty on every token already seen, once per distinct token.
fn apply_penalty(logits: &mut [f32], seen: &[u32], penalty: f32) {
    let mut seen = seen.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for &t in &seen {
        if let Some(l) = logits.get_mut(t as usize) {
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

/// One token for one row (the sequential form of [`pick_rows`]).
#[cfg(test)]
pub(crate) fn pick(
    logits: &mut [f32],
    seen: &[u32],
    cfg: &SamplingConfig,
    rng: &mut StdRng,
) -> u32 {
    let draw = draws_one(cfg).then(|| rng.random::<f32>());
    pick_with(logits, seen, cfg, draw)
}

/// Whether picking a token under `cfg` draws a random number (exactly one when it does).
fn draws_one(cfg: &SamplingConfig) -> bool {
    cfg.temperature > 0.0
}

/// [`pick`] for every row of a decoding step, the rows in parallel. The random numbers are
/// drawn first, one per row in row order, as the sequential loop drew them, so the tokens are
/// the same for a seed whatever the thread count; only the per-row work (softmax over the
/// vocabulary, the nucleus) is spread over the cores instead of running on one while the
/// others wait for the next forward pass.
pub(crate) fn pick_rows(
    rows: &mut [Vec<f32>],
    seen: &[Vec<u32>],
    cfg: &SamplingConfig,
    rng: &mut StdRng,
) -> Vec<u32> {
    use rayon::prelude::*;
    let draws: Vec<Option<f32>> = rows
        .iter()
        .map(|_| draws_one(cfg).then(|| rng.random::<f32>()))
        .collect();
    rows.par_iter_mut()
        .zip(seen.par_iter())
        .zip(draws.into_par_iter())
        .map(|((logits, seen), draw)| pick_with(logits, seen, cfg, draw))
        .collect()
}

/// One token from `logits` given the uniform number `draw` in [0, 1), which is `Some` exactly
/// when [`draws_one`].
fn pick_with(logits: &mut [f32], seen: &[u32], cfg: &SamplingConfig, draw: Option<f32>) -> u32 {
    if cfg.temperature <= 0.0 && cfg.repetition_penalty == 1.0 {
        // Greedy: first maximum, as torch.argmax.
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    if cfg.temperature > 0.0 && cfg.top_k == 0 && cfg.top_p >= 1.0 {
        return sample_full(logits, seen, cfg, draw.unwrap_or(0.0));
    }
    let dist = distribution(logits, seen, cfg);
    let Some(r) = draw.filter(|_| cfg.temperature > 0.0) else {
        return dist[0].0;
    };
    let mut cum = 0f32;
    for &(t, p) in &dist {
        cum += p;
        if r < cum {
            return t;
        }
    }
    dist.last().map(|x| x.0).unwrap_or(0)
}

/// Plain temperature sampling over the whole vocabulary (no top-k/top-p): the same
/// distribution as [`distribution`], sampled by inverse CDF in token order, which needs no sort
/// (sorting the vocabulary for every row and step dominated decode time at small models).
fn sample_full(logits: &mut [f32], seen: &[u32], cfg: &SamplingConfig, draw: f32) -> u32 {
    if cfg.repetition_penalty != 1.0 {
        apply_penalty(logits, seen, cfg.repetition_penalty);
    }
    let inv_t = 1.0 / cfg.temperature;
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) * inv_t;
    let mut total = 0f64;
    for l in logits.iter_mut() {
        *l = (*l * inv_t - max).exp();
        total += f64::from(*l);
    }
    let r = f64::from(draw) * total;
    let mut cum = 0f64;
    for (t, &p) in logits.iter().enumerate() {
        cum += f64::from(p);
        if r < cum {
            return t as u32;
        }
    }
    logits.iter().rposition(|&p| p > 0.0).unwrap_or(0) as u32
}

/// The `k` most likely next tokens with their probabilities once repetition penalty,
/// temperature, top-k and top-p of `cfg` are applied (greedy, temperature 0, is shown at
/// temperature 1). Tokens removed by top-k/top-p have probability 0 and are not listed.
pub fn top_tokens(logits: &[f32], seen: &[u32], cfg: &SamplingConfig, k: usize) -> Vec<(u32, f32)> {
    let mut l = logits.to_vec();
    let mut d = distribution(&mut l, seen, cfg);
    d.truncate(k);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn cfg() -> SamplingConfig {
        SamplingConfig {
            temperature: 1.0,
            ..Default::default()
        }
    }

    /// Softmax of [ln 1, ln 2, ln 3, ln 4] is [0.1, 0.2, 0.3, 0.4].
    fn logits() -> Vec<f32> {
        [1f32, 2.0, 3.0, 4.0].iter().map(|x| x.ln()).collect()
    }

    #[test]
    fn plain_softmax_is_sorted_and_sums_to_one() {
        let d = distribution(&mut logits(), &[], &cfg());
        let want = [(3, 0.4), (2, 0.3), (1, 0.2), (0, 0.1)];
        for ((t, p), (wt, wp)) in d.iter().zip(want) {
            assert_eq!(*t, wt);
            assert!((p - wp).abs() < 1e-6);
        }
    }

    #[test]
    fn temperature_top_k_and_top_p_follow_transformers() {
        // Temperature 0.5 squares the odds: [1, 4, 9, 16] / 30.
        let d = distribution(
            &mut logits(),
            &[],
            &SamplingConfig {
                temperature: 0.5,
                ..cfg()
            },
        );
        assert!((d[0].1 - 16.0 / 30.0).abs() < 1e-6);
        // top-k 2 keeps 0.4 and 0.3, renormalised: 4/7, 3/7.
        let d = distribution(&mut logits(), &[], &SamplingConfig { top_k: 2, ..cfg() });
        assert_eq!(d.len(), 2);
        assert!((d[0].1 - 4.0 / 7.0).abs() < 1e-6 && (d[1].1 - 3.0 / 7.0).abs() < 1e-6);
        // top-p 0.6: 0.4 + 0.3 reaches it, so two tokens stay (0.4 alone does not).
        let d = distribution(
            &mut logits(),
            &[],
            &SamplingConfig {
                top_p: 0.6,
                ..cfg()
            },
        );
        assert_eq!(d.iter().map(|x| x.0).collect::<Vec<_>>(), vec![3, 2]);
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
        let mut l = vec![2.0f32, -2.0, 1.0];
        let c = SamplingConfig {
            repetition_penalty: 2.0,
            ..cfg()
        };
        let d = distribution(&mut l, &[0, 1, 1], &c);
        assert_eq!(l, vec![1.0, -4.0, 1.0]);
        let (e1, e4) = (1f32.exp(), (-4f32).exp());
        let p0 = d.iter().find(|x| x.0 == 0).unwrap().1;
        assert!((p0 - e1 / (2.0 * e1 + e4)).abs() < 1e-6);
    }

    /// A hand-computed softmax on a 5-token vocabulary: logits [2, 1, 0, -1, 3] at T = 2 are
    /// [1, 0.5, 0, -0.5, 1.5]; exp = [2.71828, 1.64872, 1, 0.60653, 4.48169], sum 10.45522,
    /// so p = [0.25999, 0.15769, 0.09565, 0.05801, 0.42865]. Top-3 (k = 3 listed, no top-k
    /// filter) is tokens 4, 0, 1 and sums to 0.84633 <= 1.
    #[test]
    fn top_tokens_match_a_hand_softmax() {
        let logits = [2.0f32, 1.0, 0.0, -1.0, 3.0];
        let c = SamplingConfig {
            temperature: 2.0,
            ..cfg()
        };
        let top = top_tokens(&logits, &[], &c, 3);
        let want = [(4, 0.42865), (0, 0.25999), (1, 0.15769)];
        for ((t, p), (wt, wp)) in top.iter().zip(want) {
            assert_eq!(*t, wt);
            assert!((p - wp).abs() < 1e-5, "{p} vs {wp}");
        }
        let sum: f32 = top.iter().map(|x| x.1).sum();
        assert!(sum <= 1.0 + 1e-6 && (sum - 0.84633).abs() < 1e-4);
        // With top-k 2 the kept two are renormalised: 4.48169 / 7.19997 and 2.71828 / 7.19997.
        let top = top_tokens(&logits, &[], &SamplingConfig { top_k: 2, ..c }, 3);
        assert_eq!(top.len(), 2);
        assert!((top[0].1 - 0.62246).abs() < 1e-5 && (top[1].1 - 0.37754).abs() < 1e-5);
        // The raw logits are not touched (the view must not change what is sampled).
        assert_eq!(logits, [2.0, 1.0, 0.0, -1.0, 3.0]);
    }

    /// The parallel per-step picker gives, for a seed, the tokens the one-row-at-a-time loop
    /// gives: greedy, full-vocabulary, top-k/top-p, with repetition penalty, on rows of
    /// different logits over a 49,152-token vocabulary.
    #[test]
    fn rows_in_parallel_pick_what_one_row_at_a_time_picks() {
        let mut gen = StdRng::seed_from_u64(3);
        let rows: Vec<Vec<f32>> = (0..7)
            .map(|_| (0..49_152).map(|_| gen.random::<f32>() * 12.0).collect())
            .collect();
        let seen: Vec<Vec<u32>> = (0..7u32).map(|r| vec![r, 10 * r, 77]).collect();
        let cfgs = [
            SamplingConfig {
                temperature: 0.0,
                ..cfg()
            },
            SamplingConfig {
                temperature: 0.8,
                top_k: 0,
                top_p: 1.0,
                ..cfg()
            },
            SamplingConfig {
                temperature: 1.0,
                top_k: 50,
                top_p: 0.9,
                ..cfg()
            },
            SamplingConfig {
                temperature: 0.0,
                repetition_penalty: 1.3,
                ..cfg()
            },
            SamplingConfig {
                temperature: 0.7,
                top_p: 0.95,
                repetition_penalty: 1.2,
                ..cfg()
            },
        ];
        for c in &cfgs {
            for seed in 0..5 {
                let mut rng = StdRng::seed_from_u64(seed);
                let one: Vec<u32> = (0..3)
                    .flat_map(|_| {
                        rows.iter()
                            .zip(&seen)
                            .map(|(l, s)| pick(&mut l.clone(), s, c, &mut rng))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let mut rng = StdRng::seed_from_u64(seed);
                let all: Vec<u32> = (0..3)
                    .flat_map(|_| pick_rows(&mut rows.clone(), &seen, c, &mut rng))
                    .collect();
                assert_eq!(one, all, "{c:?} seed {seed}");
            }
        }
    }

    #[test]
    fn unsorted_full_vocabulary_sampling_follows_the_distribution() {
        // Temperature 0.5 squares the odds of [1, 2, 3, 4]: [1, 4, 9, 16] / 30.
        let c = SamplingConfig {
            temperature: 0.5,
            ..cfg()
        };
        let mut rng = StdRng::seed_from_u64(9);
        let mut counts = [0usize; 4];
        let n = 60_000;
        for _ in 0..n {
            counts[pick(&mut logits(), &[], &c, &mut rng) as usize] += 1;
        }
        for (k, want) in counts.iter().zip([1.0, 4.0, 9.0, 16.0]) {
            let got = *k as f64 / n as f64;
            assert!((got - want / 30.0).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn seeded_sampling_is_reproducible() {
        let pick_all = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20)
                .map(|_| pick(&mut logits(), &[], &cfg(), &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(pick_all(3), pick_all(3));
        assert_ne!(pick_all(3), pick_all(4));
    }

    /// The nucleus is found by selecting candidates, never sorting the whole vocabulary: the
    /// result equals the full sort's, for flat and peaked distributions over 49,152 tokens.
    #[test]
    fn top_p_by_selection_equals_a_full_sort() {
        let mut rng = StdRng::seed_from_u64(5);
        for (spread, top_p, top_k) in [
            (0.5f32, 0.95f32, 0),
            (4.0, 0.9, 0),
            (12.0, 0.5, 0),
            (1.0, 0.99, 3000),
        ] {
            let logits: Vec<f32> = (0..49_152).map(|_| rng.random::<f32>() * spread).collect();
            let c = SamplingConfig {
                top_p,
                top_k,
                ..cfg()
            };
            let got = distribution(&mut logits.clone(), &[], &c);
            // Reference: sort everything, softmax, keep the prefix reaching top_p.
            let mut all: Vec<(u32, f32)> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, l))
                .collect();
            all.sort_by(order);
            if top_k > 0 {
                all.truncate(top_k);
            }
            let total: f64 = all.iter().map(|x| f64::from(x.1 - all[0].1).exp()).sum();
            let mut cum = 0f64;
            let keep = all
                .iter()
                .position(|x| {
                    cum += f64::from(x.1 - all[0].1).exp() / total;
                    cum >= f64::from(top_p)
                })
                .map_or(all.len(), |p| p + 1);
            assert_eq!(got.len(), keep, "spread {spread} top_p {top_p}");
            assert!(got.iter().zip(&all).all(|(g, w)| g.0 == w.0));
            let sum: f32 = got.iter().map(|x| x.1).sum();
            assert!((sum - 1.0).abs() < 1e-4);
        }
    }
}
