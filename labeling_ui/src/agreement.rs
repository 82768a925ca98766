//! Inter-annotator agreement. Nominal labels (pairwise mode): Cohen's kappa for two labelers and
//! Krippendorff's alpha for any number of labelers with missing values. Rankings: Kendall's
//! tau-b between two labelers and Krippendorff's alpha with the ordinal metric.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Cohen's kappa over paired labels. `None` when chance agreement is total (kappa undefined),
/// e.g. both labelers used one and the same category throughout.
pub fn cohen_kappa<T: Eq + Hash>(pairs: &[(T, T)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let observed = pairs.iter().filter(|(a, b)| a == b).count() as f64 / n;
    let (mut left, mut right) = (HashMap::new(), HashMap::new());
    for (a, b) in pairs {
        *left.entry(a).or_insert(0usize) += 1;
        *right.entry(b).or_insert(0usize) += 1;
    }
    let expected: f64 = left
        .iter()
        .map(|(k, &c)| c as f64 / n * right.get(k).copied().unwrap_or(0) as f64 / n)
        .sum();
    if (1.0 - expected).abs() < 1e-12 {
        return None;
    }
    Some((observed - expected) / (1.0 - expected))
}

/// Krippendorff's alpha (nominal metric). Each unit is the list of values it received; units
/// with fewer than two values carry no pairing information and are skipped. `None` when there
/// is no variation to measure against.
pub fn krippendorff_alpha<T: Eq + Hash + Clone>(units: &[Vec<T>]) -> Option<f64> {
    // Coincidence counts: every ordered pair of values within a unit adds 1/(m-1).
    let mut coincide: HashMap<(T, T), f64> = HashMap::new();
    for unit in units.iter().filter(|u| u.len() >= 2) {
        let w = 1.0 / (unit.len() - 1) as f64;
        for (i, a) in unit.iter().enumerate() {
            for (j, b) in unit.iter().enumerate() {
                if i != j {
                    *coincide.entry((a.clone(), b.clone())).or_insert(0.0) += w;
                }
            }
        }
    }
    let mut marginal: HashMap<T, f64> = HashMap::new();
    for ((c, _), o) in &coincide {
        *marginal.entry(c.clone()).or_insert(0.0) += o;
    }
    let n: f64 = marginal.values().sum();
    let disagree: f64 = coincide
        .iter()
        .filter(|((c, k), _)| c != k)
        .map(|(_, o)| o)
        .sum();
    let total: f64 =
        marginal.values().sum::<f64>().powi(2) - marginal.values().map(|v| v * v).sum::<f64>();
    if n < 2.0 || total <= 0.0 {
        return None;
    }
    Some(1.0 - (n - 1.0) * disagree / total)
}

/// Kendall's tau-b between two rankings of the same items (`x[i]`, `y[i]` rank item `i`; equal
/// values are ties): `(C - D) / sqrt((n0 - n1)(n0 - n2))` with `n1`, `n2` the pairs tied in `x`,
/// in `y`. `None` when either side ties everything (or fewer than two items).
pub fn kendall_tau_b<T: PartialOrd>(x: &[T], y: &[T]) -> Option<f64> {
    let n = x.len().min(y.len());
    let (mut concordant, mut discordant, mut tied_x, mut tied_y) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let dx = x[i].partial_cmp(&x[j])?;
            let dy = y[i].partial_cmp(&y[j])?;
            use std::cmp::Ordering::Equal;
            match (dx, dy) {
                (Equal, Equal) => {
                    tied_x += 1;
                    tied_y += 1;
                }
                (Equal, _) => tied_x += 1,
                (_, Equal) => tied_y += 1,
                (a, b) if a == b => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    let n0 = (n * n.saturating_sub(1) / 2) as i64;
    let denom = ((n0 - tied_x) as f64 * (n0 - tied_y) as f64).sqrt();
    (denom > 0.0).then(|| (concordant - discordant) as f64 / denom)
}

/// Krippendorff's alpha with the ordinal metric: values only need an order. As for the nominal
/// alpha, each unit lists the values it received and units with fewer than two are skipped.
/// `delta(c, k)^2 = (sum of n_g for g from c to k - (n_c + n_k) / 2)^2` over the value
/// marginals `n_g` (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability").
pub fn krippendorff_alpha_ordinal<T: Ord + Clone>(units: &[Vec<T>]) -> Option<f64> {
    let mut coincide: BTreeMap<(T, T), f64> = BTreeMap::new();
    for unit in units.iter().filter(|u| u.len() >= 2) {
        let w = 1.0 / (unit.len() - 1) as f64;
        for (i, a) in unit.iter().enumerate() {
            for (j, b) in unit.iter().enumerate() {
                if i != j {
                    *coincide.entry((a.clone(), b.clone())).or_insert(0.0) += w;
                }
            }
        }
    }
    let mut marginal: BTreeMap<T, f64> = BTreeMap::new();
    for ((c, _), o) in &coincide {
        *marginal.entry(c.clone()).or_insert(0.0) += o;
    }
    let values: Vec<(&T, f64)> = marginal.iter().map(|(v, n)| (v, *n)).collect();
    let n: f64 = values.iter().map(|v| v.1).sum();
    // Cumulative marginals: sum of n_g for g in c..=k is cum[k + 1] - cum[c].
    let mut cum = vec![0.0];
    for v in &values {
        cum.push(cum.last().copied().unwrap_or(0.0) + v.1);
    }
    let pos: BTreeMap<&T, usize> = values.iter().enumerate().map(|(i, v)| (v.0, i)).collect();
    let delta2 = |c: usize, k: usize| -> f64 {
        let (lo, hi) = (c.min(k), c.max(k));
        let d = cum[hi + 1] - cum[lo] - (values[c].1 + values[k].1) / 2.0;
        d * d
    };
    let observed: f64 = coincide
        .iter()
        .map(|((a, b), o)| o * delta2(pos[a], pos[b]))
        .sum();
    let mut expected = 0.0;
    for c in 0..values.len() {
        for k in 0..values.len() {
            expected += values[c].1 * values[k].1 * delta2(c, k);
        }
    }
    if n < 2.0 || expected <= 0.0 {
        return None;
    }
    Some(1.0 - (n - 1.0) * observed / expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_textbook_example() {
        let pairs = [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b")];
        let k = cohen_kappa(&pairs).expect("defined");
        assert!((k - 0.5).abs() < 1e-9, "{k}");
    }

    #[test]
    fn kappa_perfect_and_undefined() {
        assert_eq!(cohen_kappa(&[(1, 1), (2, 2)]), Some(1.0));
        assert_eq!(cohen_kappa(&[(1, 1), (1, 1)]), None);
        assert_eq!(cohen_kappa::<u8>(&[]), None);
    }

    #[test]
    fn alpha_matches_hand_computation() {
        // n_a = 3, n_b = 5, n = 8, disagreeing coincidences = 2: alpha = 1 - 7 * 2 / 30.
        let units = vec![
            vec!["a", "a"],
            vec!["a", "b"],
            vec!["b", "b"],
            vec!["b", "b"],
        ];
        let a = krippendorff_alpha(&units).expect("defined");
        assert!((a - (1.0 - 14.0 / 30.0)).abs() < 1e-9, "{a}");
    }

    #[test]
    fn alpha_handles_missing_values_and_perfect_agreement() {
        let units = vec![vec![1, 1, 1], vec![2, 2], vec![3], vec![1, 1]];
        assert_eq!(krippendorff_alpha(&units), Some(1.0));
        assert_eq!(krippendorff_alpha(&[vec![1]]), None);
    }

    /// Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers x 12
    /// units with missing values; published alpha nominal 0.743, ordinal 0.815. Exact values from
    /// the `krippendorff` 0.9.0 Python package:
    /// `krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")`
    /// = 0.8153875037548814 (nominal: 0.743421052631579).
    fn krippendorff_2011() -> Vec<Vec<u8>> {
        let obs: [[u8; 12]; 4] = [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, 0, 0, 0],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, 0, 3],
            [0, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, 0],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, 0],
        ];
        (0..12)
            .map(|u| obs.iter().map(|o| o[u]).filter(|&v| v != 0).collect())
            .collect()
    }

    #[test]
    fn ordinal_alpha_matches_published_example() {
        let units = krippendorff_2011();
        let ord = krippendorff_alpha_ordinal(&units).expect("defined");
        assert!((ord - 0.8153875037548814).abs() < 1e-12, "{ord}");
        let nom = krippendorff_alpha(&units).expect("defined");
        assert!((nom - 0.743421052631579).abs() < 1e-12, "{nom}");
        assert_eq!(
            krippendorff_alpha_ordinal(&[vec![1, 1], vec![2, 2]]),
            Some(1.0)
        );
        assert_eq!(krippendorff_alpha_ordinal(&[vec![1, 1]]), None);
    }

    /// scipy.stats.kendalltau (tau-b): [1,2,3,4] vs [2,1,3,4] -> 0.6666666666666669;
    /// [1,2,2,3] vs [1,1,2,3] -> 0.7999999999999999 (by hand: C = 4, D = 0, one tie per side,
    /// 4 / sqrt(5 * 5)); [3,3,7,7] vs [1,4,6,9] -> 0.8164965809277261.
    #[test]
    fn tau_b_matches_scipy() {
        let close = |x: Option<f64>, want: f64| (x.expect("defined") - want).abs() < 1e-12;
        assert!(close(
            kendall_tau_b(&[1, 2, 3, 4], &[2, 1, 3, 4]),
            2.0 / 3.0
        ));
        assert!(close(kendall_tau_b(&[1, 2, 2, 3], &[1, 1, 2, 3]), 0.8));
        assert!(close(
            kendall_tau_b(&[3, 3, 7, 7], &[1, 4, 6, 9]),
            0.8164965809277261
        ));
        assert!(close(kendall_tau_b(&[1, 2, 3], &[3, 2, 1]), -1.0));
        assert_eq!(kendall_tau_b(&[1, 1, 1], &[1, 2, 3]), None, "all tied");
        assert_eq!(kendall_tau_b::<i32>(&[1], &[1]), None);
    }
}
