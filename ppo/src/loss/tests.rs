//! Golden numbers for `loss`, from TRL 0.11 PPOv2 / GRPO loss code in torch (snippet below).
//!
//! ```python
//! import torch
//! # Two completions of lengths 3 and 2 (mask), TRL PPOv2 loss code, cliprange 0.2, cliprange_value 0.2
//! logp = torch.tensor([[-1.0, -0.5, -2.0], [-0.2, -3.0, 0.0]])
//! old = torch.tensor([[-1.3, -0.5, -1.5], [-0.2, -2.5, 0.0]])
//! adv = torch.tensor([[1.0, -0.5, 2.0], [-1.0, 0.7, 0.0]])
//! mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
//! def mm(x): return (x * mask).sum() / mask.sum()
//! ratio = torch.exp(logp - old)
//! pg1 = -adv * ratio; pg2 = -adv * torch.clamp(ratio, 0.8, 1.2)
//! print("pg_loss", mm(torch.max(pg1, pg2)).item(), "clipfrac", mm((pg2 > pg1).float()).item(),
//!       "approxkl", 0.5 * mm((logp - old) ** 2).item())
//! seq = ((torch.max(pg1, pg2) * mask).sum(-1) / mask.sum(-1)).mean()
//! print("pg_loss per-sequence (grpo)", seq.item())
//! v = torch.tensor([[0.5, 1.0, -0.3], [0.0, 2.0, 0.0]]); vold = torch.tensor([[0.2, 1.1, 0.0], [0.1, 1.5, 0.0]])
//! R = torch.tensor([[1.0, 0.0, 0.5], [-1.0, 1.0, 0.0]])
//! vc = torch.clamp(v, vold - 0.2, vold + 0.2)
//! l1 = (v - R) ** 2; l2 = (vc - R) ** 2
//! print("vf_loss", 0.5 * mm(torch.max(l1, l2)).item(), "vf_clipfrac", mm((l2 > l1).float()).item())
//! ref = torch.tensor([[-1.1, -0.4, -2.5], [-0.2, -2.0, 0.0]])
//! print("k3", (torch.exp(ref - logp) - (ref - logp) - 1).tolist())
//! ```
use super::*;
use candle_core::Device;

/// The golden rows (lengths 3 and 2) flattened: the masked-out last entry of row 2 dropped.
fn t(rows: [[f32; 3]; 2]) -> Tensor {
    let flat = [&rows[0][..], &rows[1][..2]].concat();
    Tensor::new(flat.as_slice(), &Device::Cpu).unwrap()
}

fn w(how: Reduce) -> Tensor {
    Tensor::new(weights(&[3, 2], how).as_slice(), &Device::Cpu).unwrap()
}

fn scalar(x: &Tensor) -> f64 {
    f64::from(x.to_scalar::<f32>().unwrap())
}

#[test]
fn clipped_policy_loss_matches_trl() -> Result<()> {
    let logp = t([[-1.0, -0.5, -2.0], [-0.2, -3.0, 0.0]]);
    let old = t([[-1.3, -0.5, -1.5], [-0.2, -2.5, 0.0]]);
    let adv = t([[1.0, -0.5, 2.0], [-1.0, 0.7, 0.0]]);
    let (loss, clipfrac, approx_kl) =
        clipped_policy_loss(&logp, &old, &adv, &w(Reduce::Tokens), 0.2)?;
    assert!(
        (scalar(&loss) + 0.2675266).abs() < 1e-6,
        "{}",
        scalar(&loss)
    );
    assert!((clipfrac - 0.2).abs() < 1e-6 && (approx_kl - 0.059).abs() < 1e-6);
    let (seq, _, _) = clipped_policy_loss(&logp, &old, &adv, &w(Reduce::Sequences), 0.2)?;
    assert!((scalar(&seq) + 0.1749864).abs() < 1e-6, "{}", scalar(&seq));
    Ok(())
}

#[test]
fn clipped_value_loss_matches_trl() -> Result<()> {
    let v = t([[0.5, 1.0, -0.3], [0.0, 2.0, 0.0]]);
    let old = t([[0.2, 1.1, 0.0], [0.1, 1.5, 0.0]]);
    let ret = t([[1.0, 0.0, 0.5], [-1.0, 1.0, 0.0]]);
    let (loss, clipfrac) = clipped_value_loss(&v, &old, &ret, 0.2)?;
    assert!((scalar(&loss) - 0.4).abs() < 1e-6 && (clipfrac - 0.2).abs() < 1e-6);
    Ok(())
}

#[test]
fn k3_matches_trl_grpo() -> Result<()> {
    let logp = t([[-1.0, -0.5, -2.0], [-0.2, -3.0, 0.0]]);
    let refp = t([[-1.1, -0.4, -2.5], [-0.2, -2.0, 0.0]]);
    let got: Vec<f32> = k3(&logp, &refp)?.to_vec1()?;
    let want = [0.0048374, 0.0051709, 0.1065307, 0.0, 0.7182817];
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?}");
    }
    Ok(())
}

/// The KL estimators against torch (with the venv of `scripts/setup-python.sh`):
/// ```python
/// import torch
/// lp = torch.tensor([-1.0, -2.5, -0.3]); rp = torch.tensor([-1.2, -2.0, -0.3])
/// print("k1", (lp - rp).tolist(), "k3", (torch.exp(rp - lp) - 1 - (rp - lp)).tolist())
/// ```
#[test]
fn kl_estimators_and_token_rewards() {
    let close = |a: &[f32], b: &[f64]| {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((f64::from(*x) - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    };
    let (lp, rp) = ([-1.0, -2.5, -0.3], [-1.2, -2.0, -0.3]);
    close(&kl(KlEstimator::K1, &lp, &rp), &[0.2, -0.5, 0.0]);
    close(&kl(KlEstimator::K3, &lp, &rp), &[0.0187308, 0.1487212, 0.0]);
    // −β·kl per token, the score added to the last: β = 0.1, score 2.
    close(
        &token_rewards(&[0.2, -0.5, 0.0], 2.0, 0.1),
        &[-0.02, 0.05, 2.0],
    );
}
