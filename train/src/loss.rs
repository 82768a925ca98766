//! Loss helpers that more than one stage uses.
use candle_core::{Result, Tensor};

/// `log σ(x) = -relu(-x) - log(1 + exp(-|x|))`, element-wise and stable for large `|x|`
/// (the reward model's Bradley–Terry loss and the DPO family's logistic losses).
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    x.neg()?.relu()?.neg()? - tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Reference values: `torch.nn.functional.logsigmoid(torch.tensor([-100., -2., 0., 3., 100.]))`
    /// = [-100.0, -2.126928, -0.693147, -0.048587, 0.0].
    #[test]
    fn matches_torch_and_is_stable_at_extremes() -> Result<()> {
        let x = Tensor::new(&[-100f32, -2.0, 0.0, 3.0, 100.0], &Device::Cpu)?;
        let got = log_sigmoid(&x)?.to_vec1::<f32>()?;
        let want = [
            -100.0f32,
            -2.126928,
            -std::f32::consts::LN_2,
            -0.048587,
            0.0,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
        Ok(())
    }
}
