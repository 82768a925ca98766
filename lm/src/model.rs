//! The decoder written for training: full-sequence logits `(B, T, V)`, padding and packing
//! masks, per-row position ids, and a KV cache used only by generation. One implementation for
//! the Llama family, GPT-2 (`gpt2.rs`: learned positions, LayerNorm, fused `c_attn`) and sparse
//! Mixture-of-Experts blocks (`moe.rs`).
use crate::config::ModelConfig;
use crate::gemv::param;
pub use crate::kv_cache::KvCache;
use crate::kv_cache::{CacheShape, LayerCache};
use crate::linear::{Adapters, Linear};
use crate::ops;
use candle_core::{DType, Device, Module, Result, Tensor, D};

/// One batch of token rows, laid out on the host: `ids`, `segments` and `positions` are `(B, T)`
/// row-major. `segments[i] == 0` marks padding; tokens of different non-zero segments in a row
/// never attend to each other (packing).
#[derive(Debug, Clone)]
pub struct InputBatch {
    pub ids: Vec<u32>,
    pub segments: Vec<u32>,
    pub positions: Vec<u32>,
    pub b: usize,
    pub t: usize,
}

impl InputBatch {
    /// Pads `rows` to the longest one with `pad_id`, on the left or the right. Positions count
    /// real tokens only, so a padded row sees the same positions as the row alone.
    pub fn padded(rows: &[Vec<u32>], pad_id: u32, left: bool) -> Self {
        let b = rows.len();
        let t = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
        let mut out = InputBatch {
            ids: vec![pad_id; b * t],
            segments: vec![0; b * t],
            positions: vec![0; b * t],
            b,
            t,
        };
        for (i, r) in rows.iter().enumerate() {
            let start = if left { t - r.len() } else { 0 };
            for (j, &tok) in r.iter().enumerate() {
                out.ids[i * t + start + j] = tok;
                out.segments[i * t + start + j] = 1;
                out.positions[i * t + start + j] = j as u32;
            }
        }
        out
    }

    /// Builds a batch from ids and a 0/1 attention mask, positions from the mask's running count
    /// (what transformers' `generate` passes as `position_ids`).
    pub fn from_mask(ids: Vec<u32>, mask: &[u32], b: usize, t: usize) -> Self {
        // cumsum(mask) - 1, clamped at 0; padding positions are masked out anyway.
        let mut positions = vec![0u32; b * t];
        for bi in 0..b {
            let mut n = 0u32;
            for j in 0..t {
                n += u32::from(mask[bi * t + j] != 0);
                positions[bi * t + j] = n.saturating_sub(1);
            }
        }
        let segments = mask.iter().map(|&m| u32::from(m != 0)).collect();
        InputBatch {
            ids,
            segments,
            positions,
            b,
            t,
        }
    }

    /// Packs several samples into each row: segment ids count samples from 1 and positions
    /// restart at 0 for every sample. `rows[i]` lists the samples of row `i`.
    pub fn packed(rows: &[Vec<Vec<u32>>], pad_id: u32) -> Self {
        let flat: Vec<Vec<u32>> = rows.iter().map(|r| r.concat()).collect();
        let mut out = Self::padded(&flat, pad_id, false);
        for (i, samples) in rows.iter().enumerate() {
            let mut at = i * out.t;
            for (s, sample) in samples.iter().enumerate() {
                for j in 0..sample.len() {
                    out.segments[at + j] = s as u32 + 1;
                    out.positions[at + j] = j as u32;
                }
                at += sample.len();
            }
        }
        out
    }

    pub fn ids_tensor(&self, device: &Device) -> Result<Tensor> {
        Tensor::from_slice(&self.ids, (self.b, self.t), device)
    }
}

/// The q/k/v projections: three (Llama family) or GPT-2's fused `c_attn` to `[q | k | v]`.
#[derive(Debug, Clone)]
pub(crate) enum Qkv {
    Split { q: Linear, k: Linear, v: Linear },
    Fused(Linear),
}

#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub qkv: Qkv,
    pub o: Linear,
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
}

/// Gated SiLU MLP (`down(silu(gate(x)) * up(x))`), or GPT-2's `c_proj(gelu(c_fc(x)))` when
/// there is no gate.
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    pub gate: Option<Linear>,
    pub up: Linear,
    pub down: Linear,
}

/// A layer's feed-forward part: dense, or a sparse Mixture-of-Experts block.
#[derive(Debug, Clone)]
pub(crate) enum Ffn {
    Dense(Mlp),
    Moe(Box<crate::moe::Moe>),
}

/// RMSNorm (no bias) or LayerNorm (GPT-2, with bias).
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub attn: Attention,
    pub mlp: Ffn,
    pub input_norm: Norm,
    pub post_norm: Norm,
}

/// What a forward pass shares across layers.
pub(crate) struct Ctx<'a> {
    /// cos/sin tables; `None` for learned absolute positions (GPT-2).
    pub rope: Option<(Tensor, Tensor)>,
    pub mask: Tensor,
    pub adapters: Adapters,
    pub cfg: &'a ModelConfig,
    /// Router logits of the sparse layers, in layer order.
    pub router: std::cell::RefCell<Vec<Tensor>>,
}

/// A causal language model: Llama/Mistral/Qwen2/Qwen3, GPT-2, Mixtral/Qwen2-MoE/Qwen3-MoE.
#[derive(Debug, Clone)]
pub struct CausalLm {
    pub config: ModelConfig,
    pub(crate) embed: Tensor,
    /// Learned absolute position embeddings `(P, H)` (GPT-2).
    pub(crate) wpe: Option<Tensor>,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: Norm,
    /// `None` when the head is tied to the embeddings.
    pub(crate) lm_head: Option<Tensor>,
    pub(crate) inv_freq: Vec<f32>,
    /// Activation dtype; weights are cast to it as they are used.
    pub dtype: DType,
    /// Whether LoRA adapters (if any) take part in the forward pass.
    pub adapters_enabled: bool,
    /// Activation checkpointing in training forwards (transformers' `gradient_checkpointing`):
    /// see [`crate::checkpoint`]. Set only on the model being trained.
    pub checkpointing: bool,
    pub(crate) router_log: crate::moe::RouterLog,
}

impl Norm {
    fn forward(&self, x: &Tensor, eps: f64) -> Result<Tensor> {
        match &self.bias {
            None => ops::rms_norm(x, &param(&self.weight), eps),
            Some(b) => ops::layer_norm(x, &param(&self.weight), &param(b), eps),
        }
    }
}

impl Attention {
    /// q `(B, T, H, D)`, k and v `(B, T, KV, D)`: heads split but not yet moved before time, so
    /// Qwen3's q/k norm reads contiguous rows.
    fn project(&self, x: &Tensor, ctx: &Ctx) -> Result<(Tensor, Tensor, Tensor)> {
        let cfg = ctx.cfg;
        let (b, t, _) = x.dims3()?;
        let (h, kvh, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        // (B, T, H*D) -> (B, T, H, D)
        let heads = |y: Tensor, n: usize| y.reshape((b, t, n, hd));
        match &self.qkv {
            Qkv::Split { q, k, v } => Ok((
                heads(q.forward(x, ctx.adapters)?, h)?,
                heads(k.forward(x, ctx.adapters)?, kvh)?,
                heads(v.forward(x, ctx.adapters)?, kvh)?,
            )),
            Qkv::Fused(l) => {
                let y = l.forward(x, ctx.adapters)?;
                let part = |i: usize, n: usize| heads(y.narrow(D::Minus1, i * h * hd, n * hd)?, n);
                Ok((part(0, h)?, part(1, kvh)?, part(2, kvh)?))
            }
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        ctx: &Ctx,
        cache: Option<(&LayerCache, usize)>,
    ) -> Result<Tensor> {
        let cfg = ctx.cfg;
        let (b, t, _) = x.dims3()?;
        let (h, kvh, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let (mut q, mut k, v) = self.project(x, ctx)?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = ops::rms_norm(&q, &param(qn), cfg.rms_norm_eps)?;
            k = ops::rms_norm(&k, &param(kn), cfg.rms_norm_eps)?;
        }
        // (B, T, n, D) -> (B, n, T, D); RoPE reads the transposed heads through their strides.
        let (mut q, mut k) = (q.transpose(1, 2)?, k.transpose(1, 2)?);
        let v = v.transpose(1, 2)?.contiguous()?;
        if let Some((cos, sin)) = &ctx.rope {
            q = ops::rope(&q, cos, sin)?;
            k = ops::rope(&k, cos, sin)?;
        }
        let (k, v) = match cache {
            Some((layer, past)) => layer.append(&k, &v, past)?,
            None => (k, v),
        };
        let scale = 1.0 / (hd as f64).sqrt();
        if let Some(y) = crate::attn_decode::try_attend(&q, &k, &v, &ctx.mask, scale)? {
            return self.o.forward(&y, ctx.adapters);
        }
        let k = ops::repeat_kv(&k, h / kvh)?;
        let v = ops::repeat_kv(&v, h / kvh)?;
        // (B, H, T, D) x (B, H, D, S) -> (B, H, T, S)
        let scores = q.contiguous()?.matmul(&k.t()?.contiguous()?)?;
        let probs = ops::masked_softmax(&scores, &ctx.mask, scale)?;
        // (B, H, T, S) x (B, H, S, D) -> (B, T, H*D)
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h * hd))?;
        self.o.forward(&y, ctx.adapters)
    }
}

impl Mlp {
    /// `gelu_exact`: GPT-2 `activation_function = "gelu"` (erf) instead of the tanh form.
    fn forward(&self, x: &Tensor, adapters: Adapters, gelu_exact: bool) -> Result<Tensor> {
        let Some(gate) = &self.gate else {
            let u = self.up.forward(x, adapters)?;
            // candle's `gelu` is the tanh approximation, transformers' "gelu_new".
            let a = if gelu_exact { u.gelu_erf()? } else { u.gelu()? };
            return self.down.forward(&a, adapters);
        };
        let g = gate.forward(x, adapters)?;
        let u = self.up.forward(x, adapters)?;
        self.down.forward(&ops::swiglu(&g, &u)?, adapters)
    }

    /// The gated SiLU MLP of an expert.
    pub(crate) fn forward_gated(&self, x: &Tensor, adapters: Adapters) -> Result<Tensor> {
        self.forward(x, adapters, false)
    }
}

impl Layer {
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        ctx: &Ctx,
        cache: Option<(&LayerCache, usize)>,
    ) -> Result<Tensor> {
        let eps = ctx.cfg.rms_norm_eps;
        let h = self.input_norm.forward(x, eps)?;
        let x = (x + self.attn.forward(&h, ctx, cache)?)?;
        let h = self.post_norm.forward(&x, eps)?;
        let y = match &self.mlp {
            Ffn::Dense(m) => {
                let exact = ctx.cfg.gpt2.as_ref().is_some_and(|g| g.gelu_exact);
                m.forward(&h, ctx.adapters, exact)?
            }
            Ffn::Moe(m) => {
                let (y, logits) = m
                    .forward(&h, ctx.adapters)
                    .map_err(candle_core::Error::wrap)?;
                ctx.router.borrow_mut().push(logits);
                y
            }
        };
        x + y
    }
}

impl CausalLm {
    /// Why `other` cannot read this model's token ids (the vocabulary sizes differ), if so:
    /// a reference, critic or reward model must share the policy's tokenizer.
    pub fn vocab_mismatch(&self, other: &CausalLm) -> Option<String> {
        let (mine, theirs) = (self.config.vocab_size, other.config.vocab_size);
        (mine != theirs).then(|| {
            format!("vocab {theirs} differs from the policy's {mine}: they must share a tokenizer")
        })
    }

    pub fn device(&self) -> &Device {
        self.embed.device()
    }

    /// Final hidden states after the last norm, `(B, T, H)`.
    pub fn hidden_states(&self, batch: &InputBatch) -> Result<Tensor> {
        let ids = batch.ids_tensor(self.device())?;
        self.run(
            &ids,
            &batch.segments,
            &batch.segments,
            &batch.positions,
            None,
        )
    }

    /// Logits for every position, `(B, T, V)`, in f32.
    pub fn forward(&self, batch: &InputBatch) -> Result<Tensor> {
        self.logits(&self.hidden_states(batch)?)
    }

    /// Projects hidden states `(..., H)` to f32 logits `(..., V)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let w = param(self.lm_head.as_ref().unwrap_or(&self.embed)).to_dtype(hidden.dtype())?;
        crate::linear::matmul_t(hidden, &w)?.to_dtype(DType::F32)
    }

    /// One generation step over new tokens `(B, T_new)` given a cache; returns hidden states of
    /// the new tokens `(B, T_new, H)` and extends the cache.
    pub fn forward_cached(&self, batch: &InputBatch, cache: &mut KvCache) -> Result<Tensor> {
        let (b, t) = (batch.b, batch.t);
        let shape = CacheShape {
            b,
            kv_heads: self.config.num_kv_heads,
            head_dim: self.config.head_dim,
            dtype: self.dtype,
            device: self.device(),
        };
        cache.reserve(self.layers.len(), t, &shape)?;
        let s = cache.len;
        // Append the new keys' segments row by row: (B, S) -> (B, S + T).
        let mut keys = Vec::with_capacity(b * (s + t));
        for bi in 0..b {
            keys.extend_from_slice(&cache.key_segments[bi * s..(bi + 1) * s]);
            keys.extend_from_slice(&batch.segments[bi * t..(bi + 1) * t]);
        }
        let ids = batch.ids_tensor(self.device())?;
        let out = self.run(
            &ids,
            &batch.segments,
            &keys,
            &batch.positions,
            Some((&cache.layers, s)),
        )?;
        cache.key_segments = keys;
        cache.len = s + t;
        Ok(out)
    }

    fn run(
        &self,
        ids: &Tensor,
        query_seg: &[u32],
        key_seg: &[u32],
        positions: &[u32],
        cache: Option<(&[LayerCache], usize)>,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let tk = key_seg.len() / b.max(1);
        let dev = self.device();
        self.config
            .check_positions(positions)
            .map_err(candle_core::Error::wrap)?;
        let rope = match self.wpe {
            Some(_) => None,
            None => Some(ops::rope_tables(
                &self.inv_freq,
                self.config
                    .rope_scaling
                    .as_ref()
                    .map_or(1.0, |r| r.attention_factor()) as f32,
                positions,
                b,
                t,
                dev,
            )?),
        };
        let mask = ops::attention_mask(query_seg, key_seg, b, t, tk, self.dtype, dev)?;
        let ctx = Ctx {
            rope,
            mask,
            adapters: Adapters {
                on: self.adapters_enabled,
                // Cached forwards generate: never with dropout.
                dropout_key: crate::dropout::current_key().filter(|_| cache.is_none()),
            },
            cfg: &self.config,
            router: Default::default(),
        };
        let x = self.embed_tokens(ids, positions)?;
        let sparse = self.layers.iter().any(|l| matches!(l.mlp, Ffn::Moe(_)));
        // Sparse layers are not checkpointed: the router loss needs their tracked logits.
        let x = if cache.is_none() && self.checkpointing && !sparse {
            crate::checkpoint::layers(&self.layers, x, &ctx)?
        } else {
            let mut x = x;
            for (i, layer) in self.layers.iter().enumerate() {
                let slot = cache.map(|(c, past)| (&c[i], past));
                x = layer.forward(&x, &ctx, slot)?;
            }
            x
        };
        let routers = ctx.router.into_inner();
        if !routers.is_empty() {
            if let Ok(mut log) = self.router_log.0.lock() {
                *log = routers;
            }
        }
        self.norm.forward(&x, self.config.rms_norm_eps)
    }

    /// Token (and learned position) embeddings of `ids` `(B, T)` -> `(B, T, H)`.
    fn embed_tokens(&self, ids: &Tensor, positions: &[u32]) -> Result<Tensor> {
        let mut x = param(&self.embed).embedding_lookup(ids)?;
        if let Some(wpe) = &self.wpe {
            // Learned positions (B, T) -> (B, T, H), added to the token embeddings.
            let pos = Tensor::from_slice(positions, ids.dims2()?, self.device())?;
            x = (x + param(wpe).embedding_lookup(&pos)?)?;
        }
        x.to_dtype(self.dtype)
    }

    /// Router logits of the latest forward pass (one `(B*T, E)` tensor per sparse layer, rows
    /// in batch order), taken out of the model; empty for dense models.
    pub fn take_router_logits(&self) -> Vec<Tensor> {
        self.router_log
            .0
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// The router load-balancing loss of the latest forward pass as transformers adds it
    /// (`load_balancing_loss_func`, padding excluded by `segments != 0`, `(B*T)` in batch
    /// order), with per-expert assignment counts; `None` for dense models.
    pub fn router_aux_loss(
        &self,
        segments: Option<&[u32]>,
    ) -> crate::Result<Option<(Tensor, Vec<f32>)>> {
        let Some(moe) = &self.config.moe else {
            return Ok(None);
        };
        let logits = self.take_router_logits();
        if logits.is_empty() {
            return Ok(None);
        }
        crate::moe::load_balancing_loss(&logits, moe.num_experts, moe.top_k, segments).map(Some)
    }
}

trait EmbeddingLookup {
    fn embedding_lookup(&self, ids: &Tensor) -> Result<Tensor>;
}

impl EmbeddingLookup for Tensor {
    /// `self`: (V, H), `ids`: (B, T) -> (B, T, H). `index_select` has a backward (index-add).
    fn embedding_lookup(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let h = self.dim(D::Minus1)?;
        let emb = candle_nn::Embedding::new(self.clone(), h);
        emb.forward(&ids.reshape((b, t))?)
    }
}
