//! Means with confidence intervals and Wilson score intervals for rates.

/// Two-sided 95% normal quantile, `scipy.stats.norm.ppf(0.975)`.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A point estimate with a 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

/// Mean with a normal-approximation 95% interval: mean ± 1.96 · s / √n, `s` the sample standard
/// deviation (n - 1). With fewer than two values the interval is the point itself. Samples of
/// one prompt are not independent, so with `--samples` > 1 the interval is on the narrow side.
pub fn mean_ci(xs: &[f64]) -> Option<Estimate> {
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let half = if n < 2 {
        0.0
    } else {
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        Z95 * (var / n as f64).sqrt()
    };
    Some(Estimate {
        value: mean,
        lo: mean - half,
        hi: mean + half,
        n,
    })
}

/// `k` successes out of `n` with the Wilson score 95% interval (good near 0 and 1 and for small
/// `n`, unlike the normal "Wald" interval). `n == 0` gives None.
pub fn wilson(k: usize, n: usize) -> Option<Estimate> {
    if n == 0 || k > n {
        return None;
    }
    let (k, nf) = (k as f64, n as f64);
    let p = k / nf;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / nf;
    let center = (p + z2 / (2.0 * nf)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    Some(Estimate {
        value: p,
        lo: (center - half).max(0.0),
        hi: (center + half).min(1.0),
        n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden numbers (Python 3, the textbook Wilson formula):
    //   z = 1.959963984540054
    //   def wilson(k, n):
    //       p = k / n; d = 1 + z*z/n
    //       c = (p + z*z/(2*n)) / d
    //       h = z / d * (p*(1-p)/n + z*z/(4*n*n)) ** 0.5
    //       return c - h, c + h
    //   wilson(7, 10) -> (0.3967781, 0.8922087)
    //   wilson(0, 5)  -> (0.0, 0.4344825)
    //   wilson(12, 12)-> (0.7575060, 1.0)
    #[test]
    fn wilson_matches_hand_computed() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        let e = wilson(7, 10).unwrap();
        assert!(close(e.value, 0.7) && close(e.lo, 0.3967781) && close(e.hi, 0.8922087));
        let e = wilson(0, 5).unwrap();
        assert!(close(e.lo, 0.0) && close(e.hi, 0.4344825), "{e:?}");
        let e = wilson(12, 12).unwrap();
        assert!(close(e.lo, 0.7575060) && close(e.hi, 1.0), "{e:?}");
        assert!(wilson(0, 0).is_none() && wilson(3, 2).is_none());
    }

    // mean of [1, 2, 3, 4] = 2.5; s = sqrt(5/3) = 1.2909944; half = 1.96 * s / 2 = 1.2651513.
    #[test]
    fn mean_interval_matches_hand_computed() {
        let e = mean_ci(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((e.value - 2.5).abs() < 1e-12);
        assert!((e.hi - e.value - 1.265_151_3).abs() < 1e-6, "{e:?}");
        assert_eq!(mean_ci(&[2.0]).unwrap().lo, 2.0);
        assert!(mean_ci(&[]).is_none());
    }
}
