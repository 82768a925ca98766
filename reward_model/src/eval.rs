//! Evaluation of a reward model on held-out pairs: pairwise accuracy, mean margin, reward
//! statistics, and accuracy split by how much the labelers agreed.
use crate::model::RewardModel;
use crate::pairs::Pair;
use crate::Result;
use std::collections::BTreeMap;

/// Agreement buckets (share of labelers who preferred `chosen`): unanimous (1.0), majority
/// (≥ 2/3) and split (below). Pairs without agreement data are in none of them.
const BUCKETS: [(&str, f64); 3] = [
    ("unanimous", 1.0),
    ("majority", 2.0 / 3.0),
    ("split", f64::NEG_INFINITY),
];

fn bucket(agreement: f64) -> &'static str {
    // Small tolerance: agreements come from JSON floats such as 0.6666666666666666.
    BUCKETS
        .iter()
        .find(|(_, lo)| agreement >= lo - 1e-9)
        .map_or("split", |(name, _)| name)
}

fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// `-log σ(x)` in f64 on the host.
fn nls(x: f64) -> f64 {
    (-x).max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Scores every pair (batched) and returns `loss` (the training objective), `accuracy`,
/// `margin`, `reward_mean`/`reward_std` (over both sides), `chosen_mean`, `rejected_mean`,
/// `pairs`, and `accuracy_<bucket>` / `pairs_<bucket>` for pairs that carry an agreement.
pub fn evaluate_pairs(
    model: &RewardModel,
    pairs: &[Pair],
    use_margin: bool,
    center: Option<f64>,
) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    if pairs.is_empty() {
        return Ok(out);
    }
    let rows: Vec<Vec<u32>> = pairs
        .iter()
        .map(|p| p.chosen.clone())
        .chain(pairs.iter().map(|p| p.rejected.clone()))
        .collect();
    let r: Vec<f64> = model.score(&rows)?.into_iter().map(f64::from).collect();
    let (rc, rr) = r.split_at(pairs.len());
    let n = pairs.len() as f64;
    let mut loss = 0.0;
    let mut by_bucket: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        let m = if use_margin {
            p.margin.unwrap_or(0.0) as f64
        } else {
            0.0
        };
        loss += nls(rc[i] - rr[i] - m) / n;
        if let Some(a) = p.agreement {
            let e = by_bucket.entry(bucket(a)).or_default();
            e.0 += usize::from(rc[i] > rr[i]);
            e.1 += 1;
        }
    }
    if let Some(c) = center {
        loss += c * rc.iter().zip(rr).map(|(a, b)| (a + b).powi(2)).sum::<f64>() / n;
    }
    let correct = rc.iter().zip(rr).filter(|(c, r)| c > r).count() as f64;
    let (mean, std) = mean_std(&r);
    out.insert("loss".into(), loss);
    out.insert("accuracy".into(), correct / n);
    out.insert(
        "margin".into(),
        rc.iter().zip(rr).map(|(c, r)| c - r).sum::<f64>() / n,
    );
    out.insert("reward_mean".into(), mean);
    out.insert("reward_std".into(), std);
    out.insert("chosen_mean".into(), mean_std(rc).0);
    out.insert("rejected_mean".into(), mean_std(rr).0);
    out.insert("pairs".into(), n);
    for (name, (ok, count)) in by_bucket {
        out.insert(format!("accuracy_{name}"), ok as f64 / count as f64);
        out.insert(format!("pairs_{name}"), count as f64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_agreement() {
        assert_eq!(bucket(1.0), "unanimous");
        assert_eq!(bucket(0.6666666666666666), "majority");
        assert_eq!(bucket(0.75), "majority");
        assert_eq!(bucket(0.5), "split");
        assert!((nls(0.0) - std::f64::consts::LN_2).abs() < 1e-12);
    }
}
