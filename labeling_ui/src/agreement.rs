//! Inter-annotator agreement on nominal labels: Cohen's kappa for two labelers and
//! Krippendorff's alpha for any number of labelers with missing values.

use std::collections::HashMap;
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
}
