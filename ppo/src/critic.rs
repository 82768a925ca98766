//! The value function of PPO: a linear head on the policy's last hidden states (shared body,
//! as TRL's `AutoModelForCausalLMWithValueHead`), or a separate critic model initialised from
//! a reward model (TRL's PPOv2 layout: body plus `score` head, both trained).
use crate::frame::Frame;
use crate::Result;
use candle_core::{DType, Device, Tensor, Var};
use reward_model::RewardModel;
use std::path::Path;

/// Names of the head's tensors in checkpoints and `value_head.safetensors` (TRL's `v_head`).
pub const HEAD_WEIGHT: &str = "v_head.summary.weight";
pub const HEAD_BIAS: &str = "v_head.summary.bias";

/// Where values come from.
pub enum Critic {
    /// `V = h W^T + b` on the policy's hidden states; `W` `(1, H)`, `b` `(1,)`, f32.
    Head { weight: Var, bias: Var },
    /// A reward model's body and `score` head, run on the same tokens.
    Model(Box<RewardModel>),
}

impl Critic {
    /// A fresh head: normal(0, 1/√H)·0.1 weights (small, so early values stay near 0), zero bias.
    pub fn head(hidden: usize, seed: u64, device: &Device) -> Result<Self> {
        let std = 0.1 / (hidden as f64).sqrt();
        let w = reward_model::model::init_head(hidden, std, seed, device)?;
        Ok(Critic::Head {
            weight: Var::from_tensor(&w)?,
            bias: Var::zeros(1, DType::F32, device)?,
        })
    }

    /// The critic's trainable variables, named for checkpoints (the separate model's under
    /// `critic.`).
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        match self {
            Critic::Head { weight, bias } => vec![
                (HEAD_WEIGHT.into(), weight.clone()),
                (HEAD_BIAS.into(), bias.clone()),
            ],
            Critic::Model(rm) => rm
                .backbone_params
                .iter()
                .map(|(n, v)| (format!("critic.{n}"), v.clone()))
                .chain([("critic.score.weight".to_string(), rm.score.clone())])
                .collect(),
        }
    }

    /// Values `(N,)` f32 at the frame's completion positions: the head on the policy's
    /// gathered hidden states `picked` `(N, H)`, or the critic's own forward over the batch.
    pub fn values(&self, picked: &Tensor, frame: &Frame) -> Result<Tensor> {
        let (h, w) = match self {
            Critic::Head { weight, .. } => (picked.clone(), weight.as_tensor()),
            Critic::Model(rm) => {
                let hidden = rm.backbone.hidden_states(&frame.input)?; // (B, T, H)
                (frame.gather(&hidden)?, rm.score.as_tensor())
            }
        };
        // (N, H) x (H, 1) -> (N,)
        let v = h.to_dtype(DType::F32)?.matmul(&w.t()?)?.squeeze(1)?;
        match self {
            Critic::Head { bias, .. } => Ok(v.broadcast_add(bias.as_tensor())?),
            Critic::Model(_) => Ok(v),
        }
    }

    /// Writes the head as `value_head.safetensors`, or the critic as a reward-model folder
    /// `critic/`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        match self {
            Critic::Head { .. } => {
                let tensors: Vec<(String, Tensor)> = self
                    .named_vars()
                    .into_iter()
                    .map(|(n, v)| (n, v.as_tensor().clone()))
                    .collect();
                let path = dir.join("value_head.safetensors");
                candle_core::safetensors::save(
                    &tensors
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                    &path,
                )?;
                Ok(())
            }
            Critic::Model(rm) => Ok(rm.save(&dir.join("critic"))?),
        }
    }
}
