//! A model's FLOP shape from its config, for the loop's meter and for `rudder estimate`.
use std::path::Path;

use lm::ModelConfig;

use crate::{FlopModel, ModelDims, StageKind};

/// The FLOP shape of a decoder config: the MLP a token passes through (MoE: its `top_k`
/// experts plus any shared expert) and the attention sizes.
pub fn model_dims(c: &ModelConfig) -> ModelDims {
    let (mlp_matrices, intermediate) = match (&c.gpt2, &c.moe) {
        (Some(_), _) => (2, c.intermediate_size),
        (None, Some(m)) => (
            3,
            m.top_k * m.expert_size + m.shared_expert_size.unwrap_or(0),
        ),
        (None, None) => (3, c.intermediate_size),
    };
    ModelDims {
        hidden_size: c.hidden_size,
        intermediate_size: intermediate,
        mlp_matrices,
        num_layers: c.num_layers,
        num_heads: c.num_heads,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        vocab_size: c.vocab_size,
    }
}

/// A model's config: a config.json, an HF folder or hub id, or a GGUF (read in full).
pub fn model_config(spec: &str) -> lm::Result<ModelConfig> {
    let path = Path::new(spec);
    if path.is_file() && path.extension().is_some_and(|e| e == "json") {
        return ModelConfig::from_file(path);
    }
    match lm::load::resolve(spec)? {
        lm::ModelSource::Folder(dir) => ModelConfig::from_file(&lm::config::config_path(&dir)),
        lm::ModelSource::Gguf(p) => {
            let raw = lm::gguf::read_gguf(&p)?.config;
            ModelConfig::from_json(raw, &p)
        }
    }
}

/// The FLOP model a trainer's loop counts with, from its `model` setting and stage name. GGUF
/// models are skipped (their config sits behind the whole tensor payload; the run reports no
/// FLOPs), and so is a model whose config cannot be read: a missing model silently (the run
/// stops on it at once, naming it), any other problem with one warning per model and process
/// (a pipeline resolves its settings more than once).
pub fn flop_model(spec: &str, stage: &str) -> Option<FlopModel> {
    if Path::new(spec).extension().is_some_and(|e| e == "gguf") {
        return None;
    }
    let config = model_config(spec).map_err(|e| warn_once(spec, &e)).ok()?;
    Some(FlopModel {
        dims: model_dims(&config),
        stage: StageKind::parse(stage).unwrap_or_default(),
        recompute: false,
    })
}

/// Warns that `spec` gets no FLOP counts, once per model: `true` when it did now.
fn warn_once(spec: &str, e: &lm::Error) -> bool {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    if matches!(e, lm::Error::NotFound { .. }) {
        return false;
    }
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if !warned
        .get_or_insert_with(HashSet::new)
        .insert(spec.to_string())
    {
        return false;
    }
    tracing::warn!("cost: no FLOP counts for `{spec}`: {e}");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lora(r: usize, targets: &[&str]) -> lm::lora::LoraSpec {
        lm::lora::LoraSpec {
            r,
            alpha: 16.0,
            dropout: 0.0,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            rslora: false,
        }
    }

    /// fixtures/tiny-llama: hidden 64, MLP 160, 2 layers, 4 heads and 2 kv heads of 16, vocab
    /// 384. By hand: layer = 64·64 + 2·64·32 + 64·64 + 3·64·160 = 43,008; 2 layers + head
    /// 64·384 = 110,592. LoRA r=8 on q (64+64) and v (64+32): 8·224·2 layers = 3,584; all-linear:
    /// 8·(128+96+96+128+3·224)·2 = 17,920.
    #[test]
    fn tiny_llama_flop_model_and_lora_size() -> lm::Result<()> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny-llama");
        let m = flop_model(dir, "dpo").ok_or(lm::Error::Invalid("no flop model".into()))?;
        assert_eq!(m.stage, StageKind::Dpo);
        assert_eq!(m.dims.matmul_params(true), 110_592);
        let config = model_config(dir)?;
        let count = |r, t: &[&str]| lm::lora::adapter_params(&config, &lora(r, t));
        assert_eq!(count(8, &["q_proj", "v_proj"])?, 3_584);
        assert_eq!(count(8, &["all-linear"])?, 17_920);
        assert!(count(8, &["qproj"]).is_err());
        assert!(flop_model("no/such/model", "sft").is_none());
        Ok(())
    }

    /// A missing model is the run's error to name; a broken one is warned about once.
    #[test]
    fn the_no_flops_warning_comes_once_per_model() -> lm::Result<()> {
        let missing = model_config("/no/such/model").err();
        let missing = missing.ok_or(lm::Error::Invalid("found".into()))?;
        assert!(!warn_once("/no/such/model", &missing));
        let broken = lm::Error::Invalid("bad config".into());
        assert!(warn_once("broken-model", &broken));
        assert!(!warn_once("broken-model", &broken));
        assert!(warn_once("other-model", &broken));
        Ok(())
    }

    /// GPT-2's projections are priced (estimate used to refuse `c_attn`), and an MoE model's
    /// routed experts are not (LoRA never adapts them).
    #[test]
    fn gpt2_and_moe_lora_sizes() -> lm::Result<()> {
        let dir = |n: &str| format!("{}/../fixtures/{n}", env!("CARGO_MANIFEST_DIR"));
        let gpt2 = model_config(&dir("tiny-gpt2"))?;
        let h = gpt2.hidden_size;
        let want = (4 * (h + 3 * h) * gpt2.num_layers) as u64;
        assert_eq!(
            lm::lora::adapter_params(&gpt2, &lora(4, &["c_attn"]))?,
            want
        );
        let mixtral = model_config(&dir("tiny-mixtral"))?;
        let (h, q) = (mixtral.hidden_size, mixtral.num_heads * mixtral.head_dim);
        let attention_only = (4 * (h + q) * mixtral.num_layers) as u64;
        let all = lm::lora::adapter_params(&mixtral, &lora(4, &["q_proj", "down_proj"]))?;
        assert_eq!(all, attention_only, "routed experts adapted");
        Ok(())
    }
}
