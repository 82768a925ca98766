//! Building the decoder from named tensors (transformers' names) and listing them back.
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::linear::Linear;
use crate::model::{inv_freq, Attention, CausalLm, Layer, Mlp};
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
        let tensors = candle_core::safetensors::load(f, device).map_err(|e| Error::Weight {
            path: f.clone(),
            name: "*".into(),
            reason: e.to_string(),
        })?;
        all.extend(tensors);
    }
    Ok((all, files[0].clone()))
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
struct Taker<'a> {
    map: &'a mut HashMap<String, Tensor>,
    origin: &'a Path,
    trainable: bool,
    dtype: DType,
    vars: Vec<(String, Var)>,
}

impl Taker<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
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

    fn linear(&mut self, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
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
            q: self.linear(&format!("{p}.self_attn.q_proj"), q, h, cfg.qkv_bias)?,
            k: self.linear(&format!("{p}.self_attn.k_proj"), kv, h, cfg.qkv_bias)?,
            v: self.linear(&format!("{p}.self_attn.v_proj"), kv, h, cfg.qkv_bias)?,
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
        let i_sz = cfg.intermediate_size;
        let mlp = Mlp {
            gate: self.linear(&format!("{p}.mlp.gate_proj"), i_sz, h, false)?,
            up: self.linear(&format!("{p}.mlp.up_proj"), i_sz, h, false)?,
            down: self.linear(&format!("{p}.mlp.down_proj"), h, i_sz, false)?,
        };
        Ok(Layer {
            attn,
            mlp,
            input_norm: self.take(&format!("{p}.input_layernorm.weight"), &[h])?,
            post_norm: self.take(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
        })
    }
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
        let mut tk = Taker {
            map: &mut tensors,
            origin,
            trainable,
            dtype: precision.params,
            vars: vec![],
        };
        let (v, h) = (config.vocab_size, config.hidden_size);
        let embed = tk.take("model.embed_tokens.weight", &[v, h])?;
        let layers = (0..config.num_layers)
            .map(|i| tk.layer(&config, i))
            .collect::<Result<Vec<_>>>()?;
        let norm = tk.take("model.norm.weight", &[h])?;
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
            layers,
            norm,
            lm_head,
            dtype: precision.compute,
            adapters_enabled: true,
        };
        Ok((model, vars))
    }

    /// Every weight under its transformers name, LoRA adapters merged in.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.embed.clone())];
        let lin = |out: &mut Vec<(String, Tensor)>, name: String, l: &Linear| -> Result<()> {
            out.push((format!("{name}.weight"), l.merged_weight()?));
            if let Some(b) = &l.bias {
                out.push((format!("{name}.bias"), b.clone()));
            }
            Ok(())
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &layer.attn;
            for (n, l) in [
                ("q_proj", &a.q),
                ("k_proj", &a.k),
                ("v_proj", &a.v),
                ("o_proj", &a.o),
            ] {
                lin(&mut out, format!("{p}.self_attn.{n}"), l)?;
            }
            if let (Some(qn), Some(kn)) = (&a.q_norm, &a.k_norm) {
                out.push((format!("{p}.self_attn.q_norm.weight"), qn.clone()));
                out.push((format!("{p}.self_attn.k_norm.weight"), kn.clone()));
            }
            let m = &layer.mlp;
            for (n, l) in [
                ("gate_proj", &m.gate),
                ("up_proj", &m.up),
                ("down_proj", &m.down),
            ] {
                lin(&mut out, format!("{p}.mlp.{n}"), l)?;
            }
            out.push((
                format!("{p}.input_layernorm.weight"),
                layer.input_norm.clone(),
            ));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_norm.clone(),
            ));
        }
        out.push(("model.norm.weight".into(), self.norm.clone()));
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
            for (n, s) in [
                ("gate_proj", [i, h]),
                ("up_proj", [i, h]),
                ("down_proj", [h, i]),
            ] {
                shapes.push((format!("{p}.mlp.{n}.weight"), s.to_vec()));
            }
            shapes.push((format!("{p}.input_layernorm.weight"), vec![h]));
            shapes.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        }
        shapes.push(("model.norm.weight".into(), vec![h]));
        if !config.tie_word_embeddings {
            shapes.push(("lm_head.weight".into(), vec![v, h]));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tensors = HashMap::new();
        for (name, shape) in shapes {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight") {
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
