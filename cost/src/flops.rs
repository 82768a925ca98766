//! Model FLOPs from a decoder's shape: the usual 2N-forward / 4N-backward rule per token
//! (N = parameters inside matrix multiplies) plus the attention score and mix products.
//!
//! Per token, for a row of `T` tokens (`q = heads × head_dim`, `L` layers):
//! - forward: `2·N + 4·L·q·T` (`QKᵀ` and `softmax·V`, each `2·q·T` per token per layer; the
//!   whole `T × T` score matrix is computed, masked, so no causal halving);
//! - backward: `2·N` for the activation gradients, `2·W` for the weight gradients of the
//!   `W = min(trainable, N)` trainable matrix parameters (full training: `W = N`, so `4·N`;
//!   LoRA: only the adapters) and `8·L·q·T` (attention's two products, gradients of both inputs).
//!
//! Embedding lookups, norms, activations and the optimizer are element-wise and left out.

use serde::{Deserialize, Serialize};

/// The shape numbers of a decoder (names as in `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelDims {
    pub hidden_size: usize,
    /// MLP width a token passes through (MoE: `top_k` experts plus any shared expert).
    pub intermediate_size: usize,
    /// Matrices of `hidden × intermediate` in the MLP: 3 gated (Llama family), 2 (GPT-2).
    pub mlp_matrices: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
}

impl Default for ModelDims {
    fn default() -> Self {
        Self {
            hidden_size: 0,
            intermediate_size: 0,
            mlp_matrices: 3,
            num_layers: 0,
            num_heads: 0,
            num_kv_heads: 0,
            head_dim: 0,
            vocab_size: 0,
        }
    }
}

impl ModelDims {
    /// Parameters inside one layer's matrix multiplies: q, k, v, o and the MLP.
    pub fn layer_matmul_params(&self) -> u64 {
        let (h, i) = (self.hidden_size as u64, self.intermediate_size as u64);
        let q = (self.num_heads * self.head_dim) as u64;
        let kv = (self.num_kv_heads * self.head_dim) as u64;
        h * q + 2 * h * kv + q * h + self.mlp_matrices as u64 * h * i
    }

    /// `N`: matrix-multiply parameters of all layers, plus the LM head (`hidden × vocab`,
    /// tied or not: the product is computed either way) when `lm_head` is set.
    pub fn matmul_params(&self, lm_head: bool) -> u64 {
        let head = if lm_head {
            (self.hidden_size * self.vocab_size) as u64
        } else {
            0
        };
        self.num_layers as u64 * self.layer_matmul_params() + head
    }

    /// Attention's `4·L·q` (times the row length gives the per-token forward score FLOPs).
    fn attention_per_ctx(&self) -> f64 {
        4.0 * (self.num_layers * self.num_heads * self.head_dim) as f64
    }
}

/// Forward and backward FLOPs of some tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Flops {
    pub forward: f64,
    pub backward: f64,
}

impl Flops {
    pub fn total(&self) -> f64 {
        self.forward + self.backward
    }
}

impl std::ops::AddAssign for Flops {
    fn add_assign(&mut self, o: Self) {
        self.forward += o.forward;
        self.backward += o.backward;
    }
}

/// Forward FLOPs of `tokens` tokens in rows of `ctx` tokens.
pub fn forward_flops(dims: &ModelDims, lm_head: bool, tokens: f64, ctx: f64) -> f64 {
    tokens * (2.0 * dims.matmul_params(lm_head) as f64 + dims.attention_per_ctx() * ctx)
}

/// Backward FLOPs of `tokens` tokens in rows of `ctx` tokens with `trainable` trainable
/// parameters (see the module docs).
pub fn backward_flops(
    dims: &ModelDims,
    lm_head: bool,
    trainable: u64,
    tokens: f64,
    ctx: f64,
) -> f64 {
    let n = dims.matmul_params(lm_head);
    let w = trainable.min(n) as f64;
    tokens * (2.0 * n as f64 + 2.0 * w + 2.0 * dims.attention_per_ctx() * ctx)
}

/// Which trainer: decides the passes each training token goes through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    #[default]
    Sft,
    Reward,
    Dpo,
    Kto,
    Ppo,
}

impl StageKind {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).ok()
    }

    pub fn name(self) -> &'static str {
        match self {
            StageKind::Sft => "sft",
            StageKind::Reward => "reward",
            StageKind::Dpo => "dpo",
            StageKind::Kto => "kto",
            StageKind::Ppo => "ppo",
        }
    }

    /// Whether the trained model computes the LM head (a reward model ends in a 1-wide score).
    pub fn lm_head(self) -> bool {
        self != StageKind::Reward
    }

    /// Forward-only passes of a same-size model per new training token besides the trained
    /// model's own: DPO's and KTO's frozen reference; PPO's generation, reference and reward
    /// model.
    pub fn extra_forwards(self) -> f64 {
        match self {
            StageKind::Sft | StageKind::Reward => 0.0,
            StageKind::Dpo | StageKind::Kto => 1.0,
            StageKind::Ppo => 3.0,
        }
    }

    /// Rows per training example (a preference pair is two rows; a KTO row goes with its
    /// mismatched KL row).
    pub fn rows_per_example(self) -> f64 {
        match self {
            StageKind::Reward | StageKind::Dpo | StageKind::Kto => 2.0,
            StageKind::Sft | StageKind::Ppo => 1.0,
        }
    }
}

/// What the training loop needs to count FLOPs: the model's shape and the stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlopModel {
    pub dims: ModelDims,
    pub stage: StageKind,
    /// Gradient checkpointing: the backward pass also recomputes the layers' forward (not the
    /// LM head). Default false.
    #[serde(default)]
    pub recompute: bool,
}

impl FlopModel {
    /// FLOPs of one training pass over `tokens` tokens of `examples` examples (row length
    /// estimated as tokens per row): for stages that do not report their padded grid.
    /// `new_data`: the first pass over these examples, which also pays the stage's extra
    /// forward passes (reference, rollout).
    pub fn step(&self, tokens: u64, examples: usize, trainable: u64, new_data: bool) -> Flops {
        let rows = (examples as f64 * self.stage.rows_per_example()).max(1.0);
        let t = tokens as f64;
        self.pass(t, t / rows, trainable, new_data)
    }

    /// FLOPs of one training pass over a padded `rows × len` micro-batch: every position is
    /// computed, padding included (the mask only hides it), so all `rows · len` count, each
    /// attending over `len`.
    pub fn step_padded(&self, rows: usize, len: usize, trainable: u64, new_data: bool) -> Flops {
        let len = len as f64;
        self.pass(rows as f64 * len, len, trainable, new_data)
    }

    fn pass(&self, positions: f64, ctx: f64, trainable: u64, new_data: bool) -> Flops {
        let s = self.stage;
        let mut forward = forward_flops(&self.dims, s.lm_head(), positions, ctx);
        if new_data {
            forward += s.extra_forwards() * forward_flops(&self.dims, true, positions, ctx);
        }
        let recompute = if self.recompute {
            forward_flops(&self.dims, false, positions, ctx)
        } else {
            0.0
        };
        Flops {
            forward,
            backward: backward_flops(&self.dims, s.lm_head(), trainable, positions, ctx)
                + recompute,
        }
    }

    /// How the counts are made, for reports.
    pub fn rule(&self) -> String {
        let extra = match self.stage {
            StageKind::Dpo | StageKind::Kto => "; plus 1 reference forward per token",
            StageKind::Ppo => "; plus generation, reference and reward forwards per new token",
            StageKind::Reward => "; no LM head",
            StageKind::Sft => "",
        };
        let recompute = if self.recompute {
            "; backward also recomputes the layers' forward (gradient checkpointing)"
        } else {
            ""
        };
        format!(
            "per computed position (padding included): forward 2N + 4·L·q·T, backward 2N + \
             2·trainable + 8·L·q·T; N = {} matmul parameters, T = padded row length{extra}\
             {recompute}",
            self.dims.matmul_params(self.stage.lm_head())
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// h=8, i=16, L=2, 2 heads of 4, 1 kv head, vocab 32. By hand:
    /// layer = q 8·8 + k,v 2·8·4 + o 8·8 + mlp 3·8·16 = 64+64+64+384 = 576; 2 layers = 1152;
    /// + head 8·32 = 256 -> N = 1408. Attention 4·L·q = 4·2·8 = 64 per context token.
    ///
    /// Shared with the other cost modules' tests.
    pub(crate) fn tiny() -> ModelDims {
        ModelDims {
            hidden_size: 8,
            intermediate_size: 16,
            mlp_matrices: 3,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 4,
            vocab_size: 32,
        }
    }

    #[test]
    fn counts_match_hand_computed_values() {
        let d = tiny();
        assert_eq!(d.layer_matmul_params(), 576);
        assert_eq!(d.matmul_params(true), 1408);
        assert_eq!(d.matmul_params(false), 1152);
        // One token at T = 10: 2·1408 + 64·10 = 3456.
        assert_eq!(forward_flops(&d, true, 1.0, 10.0), 3456.0);
        // Full training: 2·1408 + 2·1408 + 2·640 = 6912 (= 2x forward).
        assert_eq!(backward_flops(&d, true, u64::MAX, 1.0, 10.0), 6912.0);
        // 100 trainable (LoRA): 2816 + 200 + 1280 = 4296.
        assert_eq!(backward_flops(&d, true, 100, 1.0, 10.0), 4296.0);
        // Reward model, no LM head, 3 tokens at T = 3: 3·(2·1152 + 64·3) = 7488.
        assert_eq!(forward_flops(&d, false, 3.0, 3.0), 7488.0);
    }

    #[test]
    fn stages_add_their_passes() {
        let sft = FlopModel {
            dims: tiny(),
            stage: StageKind::Sft,
            recompute: false,
        };
        // 20 tokens in 2 rows: T = 10; forward 20·3456, backward 20·6912.
        let f = sft.step(20, 2, u64::MAX, true);
        assert_eq!((f.forward, f.backward), (69120.0, 138240.0));
        // The same 2 rows given as a padded 2 × 10 grid count the same.
        assert_eq!(sft.step_padded(2, 10, u64::MAX, true), f);
        // Checkpointing recomputes the layers (no head): + 20·(2·1152 + 64·10) = 58880.
        let ck = FlopModel {
            recompute: true,
            ..sft.clone()
        };
        let g = ck.step(20, 2, u64::MAX, true);
        assert_eq!((g.forward, g.backward), (69120.0, 138240.0 + 58880.0));
        // DPO: 2 pairs = 4 rows of 5 tokens; policy fwd + reference fwd, each 2·1408 + 64·5.
        let dpo = FlopModel {
            stage: StageKind::Dpo,
            ..sft.clone()
        };
        let f = dpo.step(20, 2, u64::MAX, true);
        assert_eq!(f.forward, 2.0 * 20.0 * 3136.0);
        // A later update on the same data: no reference pass.
        assert_eq!(dpo.step(20, 2, u64::MAX, false).forward, 20.0 * 3136.0);
        assert_eq!(StageKind::parse("DPO"), Some(StageKind::Dpo));
        // KTO: 2 rows + their 2 mismatched rows, policy and reference forwards: as DPO's pairs.
        let kto = FlopModel {
            stage: StageKind::Kto,
            ..sft.clone()
        };
        assert_eq!(kto.step(20, 2, u64::MAX, true), f);
        assert_eq!(StageKind::parse("kto").map(StageKind::name), Some("kto"));
        assert_eq!(StageKind::parse("x"), None);
    }
}
