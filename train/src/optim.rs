//! AdamW with decoupled weight decay, numerically the same as `torch.optim.AdamW`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, GradAccumulator, Params, Result};

/// AdamW hyper-parameters (the learning rate comes from the schedule at each step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    /// First-moment decay. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default 0.999.
    pub beta2: f64,
    /// Added to `sqrt(v_hat)` (outside the square root, as in PyTorch). Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay: `p -= lr * weight_decay * p` before the Adam update. Default 0.0.
    pub weight_decay: f64,
    /// Parameters whose name contains any of these substrings get no weight decay
    /// (e.g. `["bias", "norm"]`). Default empty: everything decays, as in PyTorch.
    pub no_decay: Vec<String>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            no_decay: Vec::new(),
        }
    }
}

impl AdamWConfig {
    fn validate(&self) -> Result<()> {
        let ok = (0.0..1.0).contains(&self.beta1)
            && (0.0..1.0).contains(&self.beta2)
            && self.eps.is_finite()
            && self.eps >= 0.0
            && self.weight_decay.is_finite()
            && self.weight_decay >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::Config(format!("invalid AdamW config: {self:?}")))
        }
    }
}

/// Per-parameter optimizer state. Always f32, whatever the parameter dtype.
#[derive(Clone, Debug)]
pub struct Moments {
    /// Updates this parameter received (PyTorch's per-parameter `state["step"]`).
    pub step: usize,
    /// First moment `m`.
    pub exp_avg: Tensor,
    /// Second moment `v`.
    pub exp_avg_sq: Tensor,
}

/// Everything needed to resume an [`AdamW`] bit-identically.
#[derive(Clone, Debug, Default)]
pub struct AdamWState {
    /// Calls to [`AdamW::step`].
    pub step: usize,
    pub moments: BTreeMap<String, Moments>,
}

type DecayFilter = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// AdamW as in `torch.optim.AdamW(amsgrad=False, maximize=False)`.
pub struct AdamW {
    config: AdamWConfig,
    state: AdamWState,
    decay_filter: Option<DecayFilter>,
}

impl std::fmt::Debug for AdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("decay_filter", &self.decay_filter.is_some())
            .finish()
    }
}

impl AdamW {
    /// A fresh optimizer (moments are created lazily on a parameter's first gradient).
    pub fn new(config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            state: AdamWState::default(),
            decay_filter: None,
        })
    }

    /// Adds a predicate: parameters for which it returns `true` get no weight decay
    /// (on top of `config.no_decay`).
    pub fn with_no_decay_filter(
        mut self,
        f: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.decay_filter = Some(Box::new(f));
        self
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Optimizer steps taken so far.
    pub fn step_count(&self) -> usize {
        self.state.step
    }

    /// Current state (tensor clones are cheap and never mutated afterwards: each step
    /// replaces the moment tensors instead of writing into them).
    pub fn state(&self) -> &AdamWState {
        &self.state
    }

    /// Replaces the state, e.g. from a checkpoint.
    pub fn set_state(&mut self, state: AdamWState) {
        self.state = state;
    }

    /// Whether `name` receives weight decay.
    pub fn decays(&self, name: &str) -> bool {
        self.config.weight_decay > 0.0
            && !self
                .config
                .no_decay
                .iter()
                .any(|s| name.contains(s.as_str()))
            && !self.decay_filter.as_ref().is_some_and(|f| f(name))
    }

    /// One update with learning rate `lr`. Parameters with no gradient are skipped
    /// entirely: no decay, no moment update, their step count does not advance.
    pub fn step(&mut self, params: &Params, grads: &GradAccumulator, lr: f64) -> Result<()> {
        if grads.grads().len() != params.len() {
            return Err(Error::GradCountMismatch {
                expected: params.len(),
                got: grads.grads().len(),
            });
        }
        for ((name, var), grad) in params.iter().zip(grads.grads()) {
            let Some(grad) = grad else { continue };
            if grad.dims() != var.dims() {
                return Err(Error::ShapeMismatch {
                    name: name.to_string(),
                    expected: var.dims().to_vec(),
                    got: grad.dims().to_vec(),
                });
            }
            let decay = if self.decays(name) {
                self.config.weight_decay
            } else {
                0.0
            };
            let p = var.as_tensor().to_dtype(DType::F32)?;
            let moments = moments_for(&mut self.state.moments, name, &p)?;
            // An f32 parameter on the CPU is updated in place, in three passes.
            let g = grad.to_dtype(DType::F32)?;
            if var.dtype() == DType::F32
                && crate::optim_fused::try_update(&self.config, moments, &p, &g, lr, decay)?
            {
                continue;
            }
            let new_p = update(&self.config, moments, &p, grad, lr, decay)?;
            var.set(&new_p.to_dtype(var.dtype())?)?;
        }
        self.state.step += 1;
        Ok(())
    }
}

/// The state of `name`, created as zeros on its first gradient.
fn moments_for<'m>(
    all: &'m mut BTreeMap<String, Moments>,
    name: &str,
    p: &Tensor,
) -> Result<&'m mut Moments> {
    if !all.contains_key(name) {
        // Two buffers: the fused update writes each moment in place.
        let m = Moments {
            step: 0,
            exp_avg: p.zeros_like()?,
            exp_avg_sq: p.zeros_like()?,
        };
        all.insert(name.to_string(), m);
    }
    all.get_mut(name)
        .ok_or_else(|| Error::MissingParam(name.to_string()))
}

/// The `_single_tensor_adamw` body; returns the new parameter (f32).
fn update(
    cfg: &AdamWConfig,
    st: &mut Moments,
    p: &Tensor,
    g: &Tensor,
    lr: f64,
    decay: f64,
) -> Result<Tensor> {
    let g = g.to_dtype(DType::F32)?;
    st.step += 1;
    // Decoupled decay happens on the parameter before the Adam step.
    let p = p.affine(1.0 - lr * decay, 0.0)?;
    st.exp_avg = (st.exp_avg.affine(cfg.beta1, 0.0)? + g.affine(1.0 - cfg.beta1, 0.0)?)?;
    st.exp_avg_sq =
        (st.exp_avg_sq.affine(cfg.beta2, 0.0)? + g.sqr()?.affine(1.0 - cfg.beta2, 0.0)?)?;
    let t = st.step as i32;
    let bias1 = 1.0 - cfg.beta1.powi(t);
    let bias2_sqrt = (1.0 - cfg.beta2.powi(t)).sqrt();
    // eps is added after dividing by the bias correction, outside the sqrt.
    let denom = st.exp_avg_sq.sqrt()?.affine(1.0 / bias2_sqrt, cfg.eps)?;
    let step = st.exp_avg.div(&denom)?.affine(lr / bias1, 0.0)?;
    Ok((p - step)?)
}

const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";

/// The JSON half of a saved [`AdamWState`]; the tensors go to safetensors.
#[derive(Serialize, Deserialize)]
struct StateMeta {
    step: usize,
    param_steps: BTreeMap<String, usize>,
}

impl AdamWState {
    /// Writes `<tensors>` (safetensors: `<name>.exp_avg`, `<name>.exp_avg_sq`) and
    /// `<meta>` (JSON: step counts).
    pub fn save(&self, tensors: &Path, meta: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (name, m) in &self.moments {
            map.insert(format!("{name}.{EXP_AVG}"), m.exp_avg.clone());
            map.insert(format!("{name}.{EXP_AVG_SQ}"), m.exp_avg_sq.clone());
        }
        candle_core::safetensors::save(&map, tensors)?;
        let meta_json = StateMeta {
            step: self.step,
            param_steps: self
                .moments
                .iter()
                .map(|(n, m)| (n.clone(), m.step))
                .collect(),
        };
        let text = serde_json::to_string_pretty(&meta_json).map_err(Error::json(meta))?;
        std::fs::write(meta, text).map_err(Error::io(meta))
    }

    /// Reads what [`AdamWState::save`] wrote.
    pub fn load(tensors: &Path, meta: &Path, device: &Device) -> Result<Self> {
        let text = std::fs::read_to_string(meta).map_err(Error::io(meta))?;
        let meta_json: StateMeta = serde_json::from_str(&text).map_err(Error::json(meta))?;
        let mut map = candle_core::safetensors::load(tensors, device)?;
        let mut moments = BTreeMap::new();
        for (name, step) in meta_json.param_steps {
            let mut take = |suffix: &str| {
                map.remove(&format!("{name}.{suffix}"))
                    .ok_or_else(|| Error::checkpoint(tensors, format!("missing {name}.{suffix}")))
            };
            let exp_avg = take(EXP_AVG)?;
            let exp_avg_sq = take(EXP_AVG_SQ)?;
            moments.insert(
                name,
                Moments {
                    step,
                    exp_avg,
                    exp_avg_sq,
                },
            );
        }
        Ok(Self {
            step: meta_json.step,
            moments,
        })
    }
}

#[cfg(test)]
mod tests;
