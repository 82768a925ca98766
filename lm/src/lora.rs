//! LoRA adapters on the decoder's projections, in PEFT's format; shared by every stage.
//!
//! [`CausalLm::attach_lora`] puts a fresh adapter on each targeted projection with PEFT's
//! initialisation (A kaiming-uniform with `a = sqrt(5)`, i.e. `U(-1/sqrt(in), 1/sqrt(in))`,
//! seeded; B zeros, so the adapted model starts equal to the base) and returns the adapter
//! `Var`s under the names PEFT saves them with, e.g.
//! `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`. [`save_adapter`] writes
//! `adapter_config.json` + `adapter_model.safetensors` that `PeftModel.from_pretrained` loads;
//! [`CausalLm::load_adapter`] reads such a folder back (also one written by PEFT).
use crate::error::{Error, Result};
use crate::linear::{Linear, Lora};
use crate::model::{CausalLm, Ffn, Qkv};
use candle_core::{DType, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Every projection an adapter can go on (transformers' module names).
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// GPT-2's projections (Conv1D modules): `c_attn` (fused q/k/v), `c_proj` (attention output
/// and MLP down), `c_fc` (MLP up). PEFT adapts them with `fan_in_fan_out = true`.
pub const GPT2_TARGETS: [&str; 3] = ["c_attn", "c_proj", "c_fc"];

/// PEFT's prefix in front of the transformers parameter names.
const PEFT_PREFIX: &str = "base_model.model.";

/// The adapter's hyper-parameters (what `adapter_config.json` holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSpec {
    /// Rank.
    pub r: usize,
    /// Scale numerator: the update is `alpha / r · B A` (`alpha / sqrt(r)` with rsLoRA).
    pub alpha: f64,
    /// Dropout on the adapter input while training (PEFT's `lora_dropout`).
    pub dropout: f64,
    /// Module names from [`TARGETS`], or `all-linear`.
    pub targets: Vec<String>,
    /// rsLoRA scaling (`use_rslora`), only ever read from PEFT files.
    #[serde(default)]
    pub rslora: bool,
}

impl LoraSpec {
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// The adapter on projection number `module` (its place in the model, for dropout masks).
    fn adapter(&self, a: Var, b: Var, module: usize) -> Lora {
        Lora {
            a,
            b,
            scale: self.scale(),
            dropout: self.dropout,
            module: module as u64,
        }
    }

    /// The targeted module names, checked, in [`TARGETS`] order.
    pub fn modules(&self) -> Result<Vec<&'static str>> {
        if self.r == 0 {
            return Err(Error::Invalid("lora_r must be > 0".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Invalid(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        let all = TARGETS.iter().chain(GPT2_TARGETS.iter()).copied();
        if self.targets.iter().any(|t| t == "all-linear") {
            return Ok(all.collect());
        }
        let known = |t: &str| TARGETS.contains(&t) || GPT2_TARGETS.contains(&t);
        if let Some(bad) = self.targets.iter().find(|t| !known(t)) {
            return Err(Error::Invalid(format!(
                "lora target `{bad}` is not one of {TARGETS:?}, GPT-2's {GPT2_TARGETS:?} or all-linear"
            )));
        }
        if self.targets.is_empty() {
            return Err(Error::Invalid("lora_targets is empty".into()));
        }
        Ok(all
            .filter(|t| self.targets.iter().any(|x| x == t))
            .collect())
    }
}

impl CausalLm {
    /// Every projection with its transformers module name (`model.layers.0.self_attn.q_proj`,
    /// GPT-2 `transformer.h.0.attn.c_attn`) and its short name (`q_proj`). Routed experts and
    /// routers are not listed (adapters go on attention and dense/shared MLPs).
    fn projections_mut(&mut self) -> Vec<(String, &'static str, &mut Linear)> {
        let gpt2 = self.config.gpt2.is_some();
        let mut out = vec![];
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let (attn, mlp) = if gpt2 {
                (
                    format!("transformer.h.{i}.attn"),
                    format!("transformer.h.{i}.mlp"),
                )
            } else {
                (
                    format!("model.layers.{i}.self_attn"),
                    format!("model.layers.{i}.mlp"),
                )
            };
            let a = &mut layer.attn;
            match &mut a.qkv {
                Qkv::Split { q, k, v } => {
                    for (n, l) in [("q_proj", q), ("k_proj", k), ("v_proj", v)] {
                        out.push((format!("{attn}.{n}"), n, l));
                    }
                    out.push((format!("{attn}.o_proj"), "o_proj", &mut a.o));
                }
                Qkv::Fused(l) => {
                    out.push((format!("{attn}.c_attn"), "c_attn", l));
                    out.push((format!("{attn}.c_proj"), "c_proj", &mut a.o));
                }
            }
            let (m, prefix) = match &mut layer.mlp {
                Ffn::Dense(m) => (m, mlp),
                Ffn::Moe(b) => match &mut b.shared {
                    Some((m, _)) => (m, format!("{mlp}.shared_expert")),
                    None => continue,
                },
            };
            if gpt2 {
                out.push((format!("{prefix}.c_fc"), "c_fc", &mut m.up));
                out.push((format!("{prefix}.c_proj"), "c_proj", &mut m.down));
                continue;
            }
            if let Some(g) = &mut m.gate {
                out.push((format!("{prefix}.gate_proj"), "gate_proj", g));
            }
            out.push((format!("{prefix}.up_proj"), "up_proj", &mut m.up));
            out.push((format!("{prefix}.down_proj"), "down_proj", &mut m.down));
        }
        out
    }

    /// The same list, read-only: the walk runs on a shallow clone (tensors are shared, not
    /// copied), so the two lists cannot disagree.
    fn projections(&self) -> Vec<(String, &'static str, Linear)> {
        let mut copy = self.clone();
        copy.projections_mut()
            .into_iter()
            .map(|(n, s, l)| (n, s, l.clone()))
            .collect()
    }

    /// Attaches fresh adapters (PEFT init, seeded) to the targeted projections and returns their
    /// `Var`s (f32) under PEFT's names, A before B, layer by layer. Replaces existing adapters.
    pub fn attach_lora(&mut self, spec: &LoraSpec, seed: u64) -> Result<Vec<(String, Var)>> {
        let modules = spec.modules()?;
        let (r, dev) = (spec.r, self.device().clone());
        let mut rng = StdRng::seed_from_u64(seed);
        let mut vars = vec![];
        for (module, (name, short, lin)) in self.projections_mut().into_iter().enumerate() {
            if !modules.contains(&short) {
                continue;
            }
            let (out_dim, in_dim) = lin.weight.dims2()?;
            // kaiming_uniform_(a=sqrt(5)): bound = sqrt(6 / ((1 + a²) fan_in)) = 1/sqrt(fan_in).
            let bound = 1.0 / (in_dim as f64).sqrt();
            let a: Vec<f32> = (0..r * in_dim)
                .map(|_| rng.random_range(-bound..bound) as f32)
                .collect();
            let a = Var::from_tensor(&Tensor::from_vec(a, (r, in_dim), &dev)?)?;
            let b = Var::zeros((out_dim, r), DType::F32, &dev)?;
            vars.push((format!("{PEFT_PREFIX}{name}.lora_A.weight"), a.clone()));
            vars.push((format!("{PEFT_PREFIX}{name}.lora_B.weight"), b.clone()));
            lin.lora = Some(spec.adapter(a, b, module));
        }
        if vars.is_empty() {
            let mut names: Vec<&str> = self.projections().iter().map(|p| p.1).collect();
            names.sort_unstable();
            names.dedup();
            return Err(Error::Invalid(format!(
                "no projection of this {} model matches lora targets {:?} (it has {names:?}, \
                 or use all-linear)",
                self.config.arch.model_type(),
                spec.targets
            )));
        }
        self.adapters_enabled = true;
        Ok(vars)
    }

    /// Whether adapters take part in the forward pass (off = the base model, e.g. as the DPO
    /// reference without a second copy of the weights).
    pub fn set_adapters_enabled(&mut self, on: bool) {
        self.adapters_enabled = on;
    }

    /// The adapter tensors under PEFT's names (empty without adapters).
    pub fn lora_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![];
        for (name, _, lin) in self.projections() {
            if let Some(l) = &lin.lora {
                out.push((
                    format!("{PEFT_PREFIX}{name}.lora_A.weight"),
                    l.a.as_tensor().clone(),
                ));
                out.push((
                    format!("{PEFT_PREFIX}{name}.lora_B.weight"),
                    l.b.as_tensor().clone(),
                ));
            }
        }
        out
    }

    /// Loads a PEFT LoRA folder (`adapter_config.json` + `adapter_model.safetensors`) onto this
    /// model; returns the spec and the adapter `Var`s (trainable if the caller uses them).
    pub fn load_adapter(&mut self, dir: &Path) -> Result<(LoraSpec, Vec<(String, Var)>)> {
        let spec = read_adapter_config(&dir.join("adapter_config.json"))?;
        let modules = spec.modules()?;
        let path = dir.join("adapter_model.safetensors");
        let tensors = candle_core::safetensors::load(&path, self.device())
            .map_err(|e| weight_err(&path, "*", e))?;
        // PEFT saves without the adapter name; older files may keep `.default`.
        let tensors: HashMap<String, Tensor> = tensors
            .into_iter()
            .map(|(k, v)| (k.replace(".default.", "."), v))
            .collect();
        let r = spec.r;
        let mut vars = vec![];
        let mut used = 0;
        for (module, (name, short, lin)) in self.projections_mut().into_iter().enumerate() {
            if !modules.contains(&short) {
                continue;
            }
            let (out_dim, in_dim) = lin.weight.dims2()?;
            let mut get = |part: &str, shape: (usize, usize)| -> Result<Var> {
                let key = format!("{PEFT_PREFIX}{name}.{part}.weight");
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| weight_err(&path, &key, "missing"))?;
                if t.dims() != [shape.0, shape.1] {
                    return Err(weight_err(
                        &path,
                        &key,
                        format!("shape {:?}, expected {shape:?}", t.dims()),
                    ));
                }
                used += 1;
                Ok(Var::from_tensor(&t.to_dtype(DType::F32)?)?)
            };
            let (a, b) = (get("lora_A", (r, in_dim))?, get("lora_B", (out_dim, r))?);
            vars.push((format!("{PEFT_PREFIX}{name}.lora_A.weight"), a.clone()));
            vars.push((format!("{PEFT_PREFIX}{name}.lora_B.weight"), b.clone()));
            lin.lora = Some(spec.adapter(a, b, module));
        }
        if used != tensors.len() {
            let reason = format!(
                "{} tensors, only {used} match the targeted projections",
                tensors.len()
            );
            return Err(weight_err(&path, "*", reason));
        }
        self.adapters_enabled = true;
        Ok((spec, vars))
    }
}

fn weight_err(path: &Path, name: &str, reason: impl ToString) -> Error {
    Error::Weight {
        path: path.to_path_buf(),
        name: name.into(),
        reason: reason.to_string(),
    }
}

/// Writes `adapter_model.safetensors` (f32, PEFT's names) and `adapter_config.json`.
/// `base_model` is recorded as `base_model_name_or_path` so PEFT can find the base.
pub fn save_adapter(model: &CausalLm, spec: &LoraSpec, base_model: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tensors = HashMap::new();
    for (name, t) in model.lora_tensors() {
        let t = t
            .to_dtype(DType::F32)?
            .to_device(&candle_core::Device::Cpu)?
            .contiguous()?;
        tensors.insert(name, t);
    }
    if tensors.is_empty() {
        return Err(Error::Invalid(
            "the model has no LoRA adapters to save".into(),
        ));
    }
    let path = dir.join("adapter_model.safetensors");
    candle_core::safetensors::save(&tensors, &path).map_err(|e| weight_err(&path, "*", e))?;
    let mut cfg = adapter_config_json(spec, base_model)?;
    // List only the module names this model has (all-linear expands over every family), and
    // mark GPT-2's Conv1D weights as stored (in, out), as PEFT does.
    let mut present: Vec<&str> = vec![];
    for (_, short, lin) in model.projections() {
        if lin.lora.is_some() && !present.contains(&short) {
            present.push(short);
        }
    }
    cfg["target_modules"] = serde_json::json!(present);
    cfg["fan_in_fan_out"] = model.config.gpt2.is_some().into();
    let path = dir.join("adapter_config.json");
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| Error::Json {
        path: path.clone(),
        source: e,
    })?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))
}

/// PEFT 0.21's `LoraConfig` fields for a plain LoRA on a causal LM.
pub fn adapter_config_json(spec: &LoraSpec, base_model: &str) -> Result<serde_json::Value> {
    let modules = spec.modules()?;
    Ok(serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": spec.r,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "target_modules": modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": spec.rslora,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null
    }))
}

/// Reads a PEFT `adapter_config.json`, refusing what the adapters here cannot represent.
pub fn read_adapter_config(path: &Path) -> Result<LoraSpec> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    let field_err = |field: &str, reason: &str| Error::Config {
        path: path.to_path_buf(),
        field: field.into(),
        reason: reason.into(),
    };
    if v["peft_type"].as_str() != Some("LORA") {
        return Err(field_err("peft_type", "only LORA adapters are supported"));
    }
    for (f, ok) in [
        ("use_dora", !v["use_dora"].as_bool().unwrap_or(false)),
        ("bias", v["bias"].as_str().is_none_or(|b| b == "none")),
        (
            "rank_pattern",
            v["rank_pattern"].as_object().is_none_or(|o| o.is_empty()),
        ),
        (
            "alpha_pattern",
            v["alpha_pattern"].as_object().is_none_or(|o| o.is_empty()),
        ),
        ("modules_to_save", v["modules_to_save"].is_null()),
        ("lora_bias", !v["lora_bias"].as_bool().unwrap_or(false)),
        ("layers_to_transform", v["layers_to_transform"].is_null()),
    ] {
        if !ok {
            return Err(field_err(f, "not supported by Rudder's LoRA"));
        }
    }
    let targets = match &v["target_modules"] {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => {
            return Err(field_err(
                "target_modules",
                "expected a list of module names",
            ))
        }
    };
    let r = v["r"]
        .as_u64()
        .ok_or_else(|| field_err("r", "expected a positive integer"))? as usize;
    Ok(LoraSpec {
        r,
        alpha: v["lora_alpha"].as_f64().unwrap_or(8.0),
        dropout: v["lora_dropout"].as_f64().unwrap_or(0.0),
        targets,
        rslora: v["use_rslora"].as_bool().unwrap_or(false),
    })
}

mod count;
pub use count::{adaptable_projections, adapter_params};

#[cfg(test)]
mod tests;

/// LoRA settings as every trainer's config carries them (flattened into the stage config, so the
/// TOML keys and flags are `lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct LoraConfig {
    /// LoRA rank; without it the whole model is trained (full fine-tuning).
    #[arg(long)]
    pub lora_r: Option<usize>,
    /// LoRA alpha; the update is scaled by alpha / r.
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// Dropout probability on the adapters' input while training, in [0, 1) (PEFT's
    /// `lora_dropout`; not in PPO).
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f64,
    /// Comma-separated projections to adapt: q_proj, k_proj, v_proj, o_proj, gate_proj,
    /// up_proj, down_proj (GPT-2: c_attn, c_proj, c_fc), or all-linear (PEFT's default for
    /// Llama/Qwen: q_proj,v_proj).
    #[arg(long, value_delimiter = ',', default_value = "q_proj,v_proj")]
    pub lora_targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        crate::settings::defaults()
    }
}

impl LoraConfig {
    /// The checked adapter spec when `lora_r` is set; on error, the field and the reason.
    pub fn spec(&self) -> std::result::Result<Option<LoraSpec>, (&'static str, String)> {
        let Some(r) = self.lora_r else {
            return Ok(None);
        };
        if r == 0 {
            return Err(("lora_r", "must be > 0".into()));
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return Err(("lora_alpha", "must be > 0".into()));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(("lora_dropout", "must be in [0, 1)".into()));
        }
        let spec = LoraSpec {
            r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            targets: self.lora_targets.clone(),
            rslora: false,
        };
        spec.modules()
            .map_err(|e| ("lora_targets", e.to_string()))?;
        Ok(Some(spec))
    }
}

impl CausalLm {
    /// The variables a trainer optimises: fresh LoRA adapters when `spec` is given (the base
    /// weights stay plain tensors: no gradient, no optimizer state), else `full`, the model's own
    /// weights, which exist only when it was loaded trainable.
    pub fn trainable_vars(
        &mut self,
        spec: Option<&LoraSpec>,
        full: Vec<(String, Var)>,
        seed: u64,
    ) -> Result<Vec<(String, Var)>> {
        match spec {
            Some(s) => self.attach_lora(s, seed),
            None if full.is_empty() => Err(Error::Invalid(
                "full fine-tuning needs the model loaded trainable (or set lora_r)".into(),
            )),
            None => Ok(full),
        }
    }
}
