//! Building the decoder from named tensors (transformers' names) and listing them back.
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::linear::Linear;
use crate::model::{Attention, CausalLm, Ffn, Layer, Mlp, Norm, Qkv};
use crate::rope::inv_freq;
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Reads every tensor of a model folder: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`.
pub fn read_safetensors(dir: &Path, device: &Device) -> Result<(HashMap<String, Tensor>, PathBuf)> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if single.exists() {
        vec![single]
    } else if index.exists() {
        shard_files(&index)?
    } else {
        return Err(Error::NotFound {
            spec: dir.display().to_string(),
            reason: "no model.safetensors or model.safetensors.index.json in the folder".into(),
        });
    };
    let mut all = HashMap::new();
    for f in &files {
        all.extend(read_mapped(f, device)?);
    }
    Ok((all, files[0].clone()))
}

/// Reads one safetensors file through a memory map, tensor by tensor in file order, handing each
/// tensor's pages back once it is copied: the process never holds the whole file beside the
/// tensors (a plain read peaked at twice the model's size), and the file's pages stay in the
/// page cache for the next run.
fn read_mapped(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    use candle_core::safetensors::Load;
    let bad = |e: String| Error::Weight {
        path: path.to_path_buf(),
        name: "*".into(),
        reason: e,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: a read-only private mapping, dropped before returning; as with any reader, a file
    // rewritten by another process while it is read gives wrong weights, never unsoundness here
    // beyond what safetensors' own mmap loaders (candle, transformers) accept.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let _ = mmap.advise(memmap2::Advice::Sequential);
    let st = safetensors::SafeTensors::deserialize(&mmap).map_err(|e| bad(e.to_string()))?;
    let mut views = st.tensors();
    views.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    let base = mmap.as_ptr() as usize;
    let mut out = HashMap::with_capacity(views.len());
    for (name, view) in views {
        let t = view.load(device).map_err(|e| Error::Weight {
            path: path.to_path_buf(),
            name: name.clone(),
            reason: e.to_string(),
        })?;
        let (start, len) = (view.data().as_ptr() as usize - base, view.data().len());
        // SAFETY: the range lies inside the mapping, which is read-only and private: dropped
        // pages are read again from the file if touched (a neighbour's shared page).
        let _ =
            unsafe { mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
        out.insert(name, t);
    }
    Ok(out)
}

fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Json {
        path: index.to_path_buf(),
        source: e,
    })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Config {
            path: index.to_path_buf(),
            field: "weight_map".into(),
            reason: "missing or not an object".into(),
        })?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|f| f.as_str().map(String::from))
        .collect();
    files.sort();
    files.dedup();
    let dir = index.parent().unwrap_or(Path::new("."));
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Hands out tensors by name with shape checks, and turns them into trainable `Var`s on request.
pub(crate) struct Taker<'a> {
    map: &'a mut HashMap<String, Tensor>,
    origin: &'a Path,
    trainable: bool,
    dtype: DType,
    vars: Vec<(String, Var)>,
}

impl Taker<'_> {
    pub(crate) fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.checked(name, shape)?;
        self.finish(name, t)
    }

    /// A weight stored as `(in, out)` (GPT-2's Conv1D), returned as `(out, in)`: the `Var` keeps
    /// the transformers name and is transposed back on save.
    pub(crate) fn take_t(&mut self, name: &str, stored: &[usize]) -> Result<Tensor> {
        let t = self.checked(name, stored)?.t()?.contiguous()?;
        self.finish(name, t)
    }

    fn checked(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.map.remove(name).ok_or_else(|| Error::Weight {
            path: self.origin.to_path_buf(),
            name: name.into(),
            reason: "missing".into(),
        })?;
        if t.dims() != shape {
            return Err(Error::Weight {
                path: self.origin.to_path_buf(),
                name: name.into(),
                reason: format!("shape {:?} does not match config {:?}", t.dims(), shape),
            });
        }
        Ok(t)
    }

    fn finish(&mut self, name: &str, t: Tensor) -> Result<Tensor> {
        let t = t.to_dtype(self.dtype)?;
        if self.trainable {
            let var = Var::from_tensor(&t)?;
            let t = var.as_tensor().clone();
            self.vars.push((name.to_string(), var));
            Ok(t)
        } else {
            Ok(t)
        }
    }

    pub(crate) fn linear(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear> {
        let w = self.take(&format!("{name}.weight"), &[out, inp])?;
        let b = if bias {
            Some(self.take(&format!("{name}.bias"), &[out])?)
        } else {
            None
        };
        Ok(Linear::new(w, b))
    }

    fn layer(&mut self, cfg: &ModelConfig, i: usize) -> Result<Layer> {
        let p = format!("model.layers.{i}");
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (q, kv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
        let attn = Attention {
            qkv: Qkv::Split {
                q: self.linear(&format!("{p}.self_attn.q_proj"), q, h, cfg.qkv_bias)?,
                k: self.linear(&format!("{p}.self_attn.k_proj"), kv, h, cfg.qkv_bias)?,
                v: self.linear(&format!("{p}.self_attn.v_proj"), kv, h, cfg.qkv_bias)?,
            },
            o: self.linear(&format!("{p}.self_attn.o_proj"), h, q, cfg.o_bias)?,
            q_norm: cfg
                .qk_norm
                .then(|| self.take(&format!("{p}.self_attn.q_norm.weight"), &[hd]))
                .transpose()?,
            k_norm: cfg
                .qk_norm
                .then(|| self.take(&format!("{p}.self_attn.k_norm.weight"), &[hd]))
                .transpose()?,
        };
        let mlp = match cfg.moe.as_ref().filter(|m| m.is_sparse(i)) {
            Some(m) => Ffn::Moe(Box::new(crate::moe::take_block(self, m, h, i)?)),
            None => Ffn::Dense(self.gated_mlp(&format!("{p}.mlp"), h, cfg.intermediate_size)?),
        };
        Ok(Layer {
            attn,
            mlp,
            input_norm: self.norm(&format!("{p}.input_layernorm"), h, false)?,
            post_norm: self.norm(&format!("{p}.post_attention_layernorm"), h, false)?,
        })
    }

    /// `{p}.gate_proj`, `{p}.up_proj`, `{p}.down_proj` (or Mixtral's `w1`, `w3`, `w2` via `names`).
    pub(crate) fn gated_mlp_named(
        &mut self,
        p: &str,
        names: [&str; 3],
        h: usize,
        i: usize,
    ) -> Result<Mlp> {
        Ok(Mlp {
            gate: Some(self.linear(&format!("{p}.{}", names[0]), i, h, false)?),
            up: self.linear(&format!("{p}.{}", names[1]), i, h, false)?,
            down: self.linear(&format!("{p}.{}", names[2]), h, i, false)?,
        })
    }

    fn gated_mlp(&mut self, p: &str, h: usize, i: usize) -> Result<Mlp> {
        self.gated_mlp_named(p, GATED_NAMES, h, i)
    }

    /// `{p}.weight` (RMSNorm), plus `{p}.bias` for a LayerNorm.
    pub(crate) fn norm(&mut self, p: &str, h: usize, bias: bool) -> Result<Norm> {
        Ok(Norm {
            weight: self.take(&format!("{p}.weight"), &[h])?,
            bias: bias
                .then(|| self.take(&format!("{p}.bias"), &[h]))
                .transpose()?,
        })
    }
}

/// Names of a gated MLP's gate, up and down projections.
pub(crate) const GATED_NAMES: [&str; 3] = ["gate_proj", "up_proj", "down_proj"];

/// `{name}.weight` (adapter merged) and `{name}.bias`.
pub(crate) fn push_linear(out: &mut Vec<(String, Tensor)>, name: &str, l: &Linear) -> Result<()> {
    out.push((format!("{name}.weight"), l.merged_weight()?));
    if let Some(b) = &l.bias {
        out.push((format!("{name}.bias"), b.clone()));
    }
    Ok(())
}

/// A gated MLP under `{p}.{names[i]}`.
pub(crate) fn push_mlp(
    out: &mut Vec<(String, Tensor)>,
    p: &str,
    m: &Mlp,
    names: [&str; 3],
) -> Result<()> {
    if let Some(g) = &m.gate {
        push_linear(out, &format!("{p}.{}", names[0]), g)?;
    }
    push_linear(out, &format!("{p}.{}", names[1]), &m.up)?;
    push_linear(out, &format!("{p}.{}", names[2]), &m.down)
}

/// Parameters as stored (f32 master weights) and the activation dtype of the forward pass.
#[derive(Debug, Clone, Copy)]
pub struct Precision {
    pub params: DType,
    pub compute: DType,
}

impl Default for Precision {
    fn default() -> Self {
        Self {
            params: DType::F32,
            compute: DType::F32,
        }
    }
}

impl CausalLm {
    /// Builds the model from tensors named as in transformers. With `trainable`, every weight
    /// becomes a `Var`, returned in a stable order with its name.
    pub fn from_tensors(
        config: ModelConfig,
        mut tensors: HashMap<String, Tensor>,
        origin: &Path,
        precision: Precision,
        trainable: bool,
    ) -> Result<(Self, Vec<(String, Var)>)> {
        if config.gpt2.is_some() {
            tensors = crate::gpt2::normalise_names(tensors);
        }
        let mut tk = Taker {
            map: &mut tensors,
            origin,
            trainable,
            dtype: precision.params,
            vars: vec![],
        };
        let (v, h) = (config.vocab_size, config.hidden_size);
        let body = if config.gpt2.is_some() {
            crate::gpt2::take_body(&mut tk, &config)?
        } else {
            let embed = tk.take("model.embed_tokens.weight", &[v, h])?;
            let layers = (0..config.num_layers)
                .map(|i| tk.layer(&config, i))
                .collect::<Result<Vec<_>>>()?;
            let norm = tk.norm("model.norm", h, false)?;
            (embed, None, layers, norm)
        };
        let (embed, wpe, layers, norm) = body;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(tk.take("lm_head.weight", &[v, h])?)
        };
        let vars = tk.vars;
        let model = CausalLm {
            inv_freq: inv_freq(&config),
            config,
            embed,
            wpe,
            layers,
            norm,
            lm_head,
            dtype: precision.compute,
            adapters_enabled: true,
            checkpointing: false,
            router_log: Default::default(),
        };
        Ok((model, vars))
    }

    /// Every weight under its transformers name, LoRA adapters merged in.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        if self.config.gpt2.is_some() {
            return crate::gpt2::named_tensors(self);
        }
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.embed.clone())];
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &layer.attn;
            if let Qkv::Split { q, k, v } = &a.qkv {
                for (n, l) in [("q_proj", q), ("k_proj", k), ("v_proj", v)] {
                    push_linear(&mut out, &format!("{p}.self_attn.{n}"), l)?;
                }
            }
            push_linear(&mut out, &format!("{p}.self_attn.o_proj"), &a.o)?;
            if let (Some(qn), Some(kn)) = (&a.q_norm, &a.k_norm) {
                out.push((format!("{p}.self_attn.q_norm.weight"), qn.clone()));
                out.push((format!("{p}.self_attn.k_norm.weight"), kn.clone()));
            }
            match &layer.mlp {
                Ffn::Dense(m) => push_mlp(&mut out, &format!("{p}.mlp"), m, GATED_NAMES)?,
                Ffn::Moe(m) => crate::moe::push_block(&mut out, m, &self.config, i)?,
            }
            out.push((
                format!("{p}.input_layernorm.weight"),
                layer.input_norm.weight.clone(),
            ));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_norm.weight.clone(),
            ));
        }
        out.push(("model.norm.weight".into(), self.norm.weight.clone()));
        if let Some(h) = &self.lm_head {
            out.push(("lm_head.weight".into(), h.clone()));
        }
        Ok(out)
    }
}

impl CausalLm {
    /// A model with random weights built from a config alone (benchmarks on machines without
    /// the real weights): normal(0, 0.02) matrices, unit norms, zero biases, seeded.
    pub fn random(
        config: ModelConfig,
        device: &Device,
        precision: Precision,
        trainable: bool,
        seed: u64,
    ) -> Result<(Self, Vec<(String, Var)>)> {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let shapes = param_shapes(&config);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tensors = HashMap::new();
        for (name, shape) in shapes {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight")
                || name.ends_with("ln_f.weight")
                || (name.contains(".ln_") && name.ends_with(".weight"))
            {
                vec![1.0; n]
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                // Box-Muller normal samples, std 0.02 (transformers' initializer_range).
                (0..n)
                    .map(|_| {
                        let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
                        0.02 * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                    })
                    .collect()
            };
            tensors.insert(name, Tensor::from_vec(data, shape, device)?);
        }
        Self::from_tensors(
            config,
            tensors,
            Path::new("<random-init>"),
            precision,
            trainable,
        )
    }
}

/// Every tensor a model of this config has, under its transformers name and stored shape.
pub(crate) fn param_shapes(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    if config.gpt2.is_some() {
        return crate::gpt2::param_shapes(config);
    }
    let (v, h, i) = (
        config.vocab_size,
        config.hidden_size,
        config.intermediate_size,
    );
    let hd = config.head_dim;
    let (q, kv) = (config.num_heads * hd, config.num_kv_heads * hd);
    let mut shapes: Vec<(String, Vec<usize>)> =
        vec![("model.embed_tokens.weight".into(), vec![v, h])];
    for l in 0..config.num_layers {
        let p = format!("model.layers.{l}");
        for (n, s) in [
            ("q_proj", [q, h]),
            ("k_proj", [kv, h]),
            ("v_proj", [kv, h]),
            ("o_proj", [h, q]),
        ] {
            shapes.push((format!("{p}.self_attn.{n}.weight"), s.to_vec()));
        }
        if config.qkv_bias {
            for (n, s) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                shapes.push((format!("{p}.self_attn.{n}.bias"), vec![s]));
            }
        }
        if config.o_bias {
            shapes.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
        }
        if config.qk_norm {
            shapes.push((format!("{p}.self_attn.q_norm.weight"), vec![hd]));
            shapes.push((format!("{p}.self_attn.k_norm.weight"), vec![hd]));
        }
        match config.moe.as_ref().filter(|m| m.is_sparse(l)) {
            Some(m) => shapes.extend(crate::moe::block_shapes(m, h, l)),
            None => shapes.extend(mlp_shapes(&format!("{p}.mlp"), GATED_NAMES, h, i)),
        }
        shapes.push((format!("{p}.input_layernorm.weight"), vec![h]));
        shapes.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
    }
    shapes.push(("model.norm.weight".into(), vec![h]));
    if !config.tie_word_embeddings {
        shapes.push(("lm_head.weight".into(), vec![v, h]));
    }
    shapes
}

/// Shapes of a gated MLP `h -> i -> h` under `{p}.{names[i]}.weight`.
pub(crate) fn mlp_shapes(
    p: &str,
    names: [&str; 3],
    h: usize,
    i: usize,
) -> Vec<(String, Vec<usize>)> {
    vec![
        (format!("{p}.{}.weight", names[0]), vec![i, h]),
        (format!("{p}.{}.weight", names[1]), vec![i, h]),
        (format!("{p}.{}.weight", names[2]), vec![h, i]),
    ]
}
