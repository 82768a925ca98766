//! The reward model: a decoder body plus a bias-free linear `score` head `(1, H)` read at one token
//! per sequence, as transformers' `LlamaForSequenceClassification` with `num_labels = 1`.
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use lm::backbone::{load_backbone, Backbone};
use lm::{CausalLm, InputBatch, LoadOptions, ModelSource, Tokenizer};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Name of the head tensor, as transformers saves it.
pub const SCORE_WEIGHT: &str = "score.weight";

/// How to create the head when the model folder has none (e.g. an SFT output).
#[derive(Debug, Clone, Copy)]
pub struct HeadInit {
    pub seed: u64,
    /// Standard deviation of the normal init; `None` takes the config's `initializer_range`
    /// (0.02 when absent), as transformers' `_init_weights` does.
    pub std: Option<f64>,
}

/// Which token's hidden state a row's reward is read from: the RIGHTMOST token whose id is not
/// `pad_id` (transformers 5.24 `GenericForSequenceClassification`; the attention mask is not
/// used). Rows are given unpadded, so the rule does not depend on the padding side. When the
/// pad id is also a real token ending the row (e.g. SmolLM2, where pad = `<|im_end|>`), the
/// reward is read before that trailing run, exactly as transformers does. A row made only of pad
/// ids reads its first token (transformers' `argmax` of all zeros).
pub fn reward_index(row: &[u32], pad_id: u32) -> usize {
    row.iter().rposition(|&t| t != pad_id).unwrap_or(0)
}

/// A loaded reward model.
#[derive(Debug)]
pub struct RewardModel {
    pub backbone: CausalLm,
    pub tokenizer: Tokenizer,
    /// `(1, H)`, f32; a `Var` so training can update it in place.
    pub score: Var,
    /// Padding id, also the id the reward-token rule skips (config `pad_token_id`, else the
    /// tokenizer's pad token).
    pub pad_id: u32,
    /// The backbone's trainable weights (empty when loaded frozen).
    pub backbone_params: Vec<(String, Var)>,
    pub source: ModelSource,
    /// Rows per forward pass in [`RewardModel::score`]. Default 8.
    pub score_batch_size: usize,
}

impl RewardModel {
    /// Loads a trained reward model (a folder with `score.weight`, e.g. Rudder's or
    /// transformers' `*ForSequenceClassification` with `num_labels = 1`).
    pub fn load(spec: &str, opts: &LoadOptions) -> Result<Self> {
        Self::load_with(spec, opts, None)
    }

    /// Loads a backbone and its head; without a `score.weight` in the folder the head is
    /// initialised from `init` (an error when `init` is `None`).
    pub fn load_with(spec: &str, opts: &LoadOptions, init: Option<HeadInit>) -> Result<Self> {
        let Backbone { pretrained, extra } = load_backbone(spec, opts)?;
        let cfg = &pretrained.model.config;
        let h = cfg.hidden_size;
        let origin = source_path(&pretrained.source);
        let score = match (extra.get(SCORE_WEIGHT), init) {
            (Some(w), _) => {
                if w.dims() != [1, h] {
                    return Err(Error::File {
                        path: origin,
                        reason: format!(
                            "tensor `{SCORE_WEIGHT}`: shape {:?}, expected [1, {h}] \
                                 (num_labels must be 1)",
                            w.dims()
                        ),
                    });
                }
                w.to_dtype(DType::F32)?
            }
            (None, Some(init)) => {
                let std = init.std.unwrap_or_else(|| {
                    cfg.raw
                        .get("initializer_range")
                        .and_then(|v| v.as_f64())
                        .unwrap_or(0.02)
                });
                tracing::info!(
                    seed = init.seed,
                    std,
                    "no score head in the model: initialising one"
                );
                init_head(h, std, init.seed, &opts.device)?
            }
            (None, None) => {
                return Err(Error::File {
                    path: origin,
                    reason: format!(
                        "tensor `{SCORE_WEIGHT}`: missing: this is not a reward model \
                         (train one with `rudder reward train`)"
                    ),
                })
            }
        };
        let pad_id = cfg.pad_token_id.unwrap_or(pretrained.tokenizer.pad_id);
        Ok(RewardModel {
            backbone: pretrained.model,
            tokenizer: pretrained.tokenizer,
            score: Var::from_tensor(&score)?,
            pad_id,
            backbone_params: pretrained.params,
            source: pretrained.source,
            score_batch_size: 8,
        })
    }

    pub fn device(&self) -> &Device {
        self.backbone.device()
    }

    /// Rewards of `rows` (unpadded token ids) in one forward pass, `(B,)` f32, differentiable
    /// w.r.t. the head and any trainable backbone weight. `left` pads on the left instead of
    /// the right; the result is the same either way (positions count real tokens only).
    pub fn rewards(&self, rows: &[Vec<u32>], left: bool) -> Result<Tensor> {
        if rows.is_empty() || rows.iter().any(|r| r.is_empty()) {
            return Err(Error::Invalid("cannot score an empty token row".into()));
        }
        let batch = InputBatch::padded(rows, self.pad_id, left);
        let (b, t) = (batch.b, batch.t);
        // Flat index of each row's reward token in the (B*T) grid.
        let idx: Vec<u32> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let offset = if left { t - r.len() } else { 0 };
                (i * t + offset + reward_index(r, self.pad_id)) as u32
            })
            .collect();
        let hidden = self.backbone.hidden_states(&batch)?; // (B, T, H)
        let h = hidden.dim(2)?;
        let idx = Tensor::from_vec(idx, b, self.device())?;
        // (B*T, H) -> (B, H) -> (B, 1) -> (B,)
        let picked = hidden
            .reshape((b * t, h))?
            .index_select(&idx, 0)?
            .to_dtype(DType::F32)?;
        Ok(picked.matmul(&self.score.as_tensor().t()?)?.squeeze(1)?)
    }

    /// Rewards of many rows, batched by length (less padding), in the input order.
    pub fn score(&self, rows: &[Vec<u32>]) -> Result<Vec<f32>> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut out = vec![0f32; rows.len()];
        for chunk in order.chunks(self.score_batch_size.max(1)) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| rows[i].clone()).collect();
            let r = self.rewards(&batch, false)?.to_vec1::<f32>()?;
            for (&i, v) in chunk.iter().zip(r) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

fn source_path(s: &ModelSource) -> std::path::PathBuf {
    match s {
        ModelSource::Folder(p) | ModelSource::Gguf(p) => p.clone(),
    }
}

/// `(1, H)` normal(0, std) head from a seeded generator (Box–Muller), so runs are reproducible.
pub fn init_head(h: usize, std: f64, seed: u64, device: &Device) -> Result<Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    let data: Vec<f32> = (0..h)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            (std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    Ok(Tensor::from_vec(data, (1, h), device)?)
}
