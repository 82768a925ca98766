//! Gradient accumulation over micro-batches and global-norm clipping.

use candle_core::{backprop::GradStore, DType, Tensor};

use crate::{Error, Params, Result};

/// Sums the gradients of the tracked parameters over several `loss.backward()` calls.
///
/// Scaling convention: the accumulator only *adds*. To get the mean gradient over
/// `n` micro-batches, scale each micro-batch loss by `1/n` **at the call site**
/// before `backward()` (this is what [`crate::run`] does), as in PyTorch.
///
/// Gradients are held in f32 and in the order of [`Params`]; a parameter that got
/// no gradient in any micro-batch stays `None` and the optimizer skips it.
#[derive(Debug)]
pub struct GradAccumulator {
    names: Vec<String>,
    vars: Vec<Tensor>,
    grads: Vec<Option<Tensor>>,
    micro_batches: usize,
}

impl GradAccumulator {
    /// An empty accumulator for `params`.
    pub fn new(params: &Params) -> Self {
        let (names, vars) = params
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_tensor().clone()))
            .unzip();
        Self {
            names,
            vars,
            grads: vec![None; params.len()],
            micro_batches: 0,
        }
    }

    /// Convenience for a single backward pass: `GradAccumulator::new` + `add`.
    pub fn from_store(params: &Params, store: &GradStore) -> Result<Self> {
        let mut acc = Self::new(params);
        acc.add(store)?;
        Ok(acc)
    }

    /// Adds the gradients of the tracked parameters found in `store`.
    pub fn add(&mut self, store: &GradStore) -> Result<()> {
        for (var, slot) in self.vars.iter().zip(self.grads.iter_mut()) {
            let Some(g) = store.get(var) else { continue };
            // Detached so the accumulated sum never keeps a graph alive.
            let g = g.detach().to_dtype(DType::F32)?;
            *slot = Some(match slot.take() {
                Some(sum) => (sum + g)?,
                None => g,
            });
        }
        self.micro_batches += 1;
        Ok(())
    }

    /// Number of `add` calls since creation or the last `clear`.
    pub fn micro_batches(&self) -> usize {
        self.micro_batches
    }

    /// Drops all gradients (after an optimizer step).
    pub fn clear(&mut self) {
        self.grads.iter_mut().for_each(|g| *g = None);
        self.micro_batches = 0;
    }

    /// The accumulated gradient of a parameter by name.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        let i = self.names.iter().position(|n| n == name)?;
        self.grads[i].as_ref()
    }

    /// Gradients in parameter order (`None` = no gradient).
    pub fn grads(&self) -> &[Option<Tensor>] {
        &self.grads
    }

    /// The L2 norm over all gradients, as if they were concatenated into one vector.
    pub fn global_norm(&self) -> Result<f32> {
        let mut sq = 0f64;
        for g in self.grads.iter().flatten() {
            // Summed per tensor in f32 on device, then across tensors in f64 on host.
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        Ok(sq.sqrt() as f32)
    }

    /// Like `torch.nn.utils.clip_grad_norm_`: scales all gradients by
    /// `max_norm / (total + 1e-6)` when that is below 1. Returns the norm *before*
    /// clipping. A non-finite norm is returned as is and nothing is scaled, so the
    /// caller can decide to stop (see [`Error::NonFiniteGradNorm`]).
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<f32> {
        if !(max_norm.is_finite() && max_norm > 0.0) {
            return Err(Error::Config(format!(
                "max_norm must be > 0, got {max_norm}"
            )));
        }
        let total = self.global_norm()?;
        if !total.is_finite() {
            return Ok(total);
        }
        let coef = max_norm / (total as f64 + 1e-6);
        if coef < 1.0 {
            for g in self.grads.iter_mut().flatten() {
                *g = g.affine(coef, 0.0)?;
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn setup() -> Result<(Params, Var, Var)> {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[1f32, 2.0], &dev)?)?;
        let b = Var::from_tensor(&Tensor::new(&[3f32], &dev)?)?;
        let p = Params::new(vec![("a".into(), a.clone()), ("b".into(), b.clone())])?;
        Ok((p, a, b))
    }

    #[test]
    fn accumulates_sums_and_skips_missing() -> Result<()> {
        let (p, a, b) = setup()?;
        let mut acc = GradAccumulator::new(&p);
        // d/da sum(a^2) = 2a = [2, 4]; b unused in the first micro-batch.
        acc.add(&a.as_tensor().sqr()?.sum_all()?.backward()?)?;
        assert!(acc.get("b").is_none());
        // Second micro-batch: d/da sum(3a) = 3, d/db sum(b) = 1.
        let l = (a.as_tensor().affine(3.0, 0.0)?.sum_all()? + b.as_tensor().sum_all()?)?;
        acc.add(&l.backward()?)?;
        assert_eq!(acc.micro_batches(), 2);
        assert_eq!(
            acc.get("a").map(|g| g.to_vec1::<f32>()).transpose()?,
            Some(vec![5., 7.])
        );
        assert_eq!(
            acc.get("b").map(|g| g.to_vec1::<f32>()).transpose()?,
            Some(vec![1.])
        );
        acc.clear();
        assert!(acc.get("a").is_none() && acc.micro_batches() == 0);
        Ok(())
    }

    // torch: g = [3, 4] and [12] -> total = 13; clip_grad_norm_(max_norm=1.3)
    // scales by 1.3 / (13 + 1e-6).
    #[test]
    fn clip_matches_torch() -> Result<()> {
        let (p, a, b) = setup()?;
        let l = (a
            .as_tensor()
            .affine(1.0, 0.0)?
            .mul(&Tensor::new(&[3f32, 4.0], a.device())?)?
            .sum_all()?
            + b.as_tensor().affine(12.0, 0.0)?.sum_all()?)?;
        let mut acc = GradAccumulator::from_store(&p, &l.backward()?)?;
        let total = acc.clip_grad_norm(1.3)?;
        assert!((total - 13.0).abs() < 1e-5);
        let c = (1.3 / (13.0 + 1e-6)) as f32;
        let ga = acc
            .get("a")
            .map(|g| g.to_vec1::<f32>())
            .transpose()?
            .unwrap_or_default();
        assert!((ga[0] - 3.0 * c).abs() < 1e-6 && (ga[1] - 4.0 * c).abs() < 1e-6);
        assert!((acc.global_norm()? - 1.3).abs() < 1e-5);
        // Below the threshold nothing changes.
        let before = acc.global_norm()?;
        assert_eq!(acc.clip_grad_norm(100.0)?, before);
        assert_eq!(acc.global_norm()?, before);
        assert!(acc.clip_grad_norm(0.0).is_err());
        Ok(())
    }
}
