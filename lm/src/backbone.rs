//! Loading only the decoder body (no `lm_head`), for models that put their own head on the final
//! hidden states: a reward model's `score.weight` (transformers' `*ForSequenceClassification`)
//! or a value head. Tensors outside `model.*` (the head of the saved class) are handed back
//! untouched, so the caller can read its own head from them.
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::load::{resolve, LoadOptions, ModelSource, Pretrained};
use crate::model::CausalLm;
use crate::tokenizer::Tokenizer;
use crate::weights::read_safetensors;
use candle_core::Tensor;
use std::collections::HashMap;

/// A decoder body plus the tensors of the file that are not part of it (e.g. `score.weight`,
/// `lm_head.weight`), keyed by their transformers names.
#[derive(Debug)]
pub struct Backbone {
    /// `model.lm_head` is `None` and `params` holds no head: `CausalLm::logits` must not be
    /// used (it would fall back to the embeddings); `hidden_states` is what this is for.
    pub pretrained: Pretrained,
    pub extra: HashMap<String, Tensor>,
}

/// Loads any `--model` spec (folder, hub id, GGUF) without its language-model head. A folder of
/// `LlamaForSequenceClassification` (which has no `lm_head.weight`) loads as well as a causal LM.
pub fn load_backbone(spec: &str, opts: &LoadOptions) -> Result<Backbone> {
    match resolve(spec)? {
        ModelSource::Gguf(_) => {
            // GGUF files always carry a causal LM: load it whole, then drop the head.
            let mut pretrained = crate::load(spec, opts)?;
            pretrained.model.lm_head = None;
            pretrained.params.retain(|(n, _)| n != "lm_head.weight");
            Ok(Backbone {
                pretrained,
                extra: HashMap::new(),
            })
        }
        ModelSource::Folder(dir) => {
            let config = ModelConfig::from_file(&dir.join("config.json"))?;
            let tokenizer = Tokenizer::from_folder(&dir, &config.eos_token_ids)?;
            if tokenizer.vocab_size() > config.vocab_size {
                return Err(Error::Config {
                    path: dir.join("config.json"),
                    field: "vocab_size".into(),
                    reason: format!(
                        "the tokenizer has {} tokens, more than the embedding's {} rows",
                        tokenizer.vocab_size(),
                        config.vocab_size
                    ),
                });
            }
            let (mut tensors, origin) = read_safetensors(&dir, &opts.device)?;
            let gpt2 = config.gpt2.is_some();
            let extra_names: Vec<String> = tensors
                .keys()
                .filter(|n| !is_body(n, gpt2))
                .cloned()
                .collect();
            let extra = extra_names
                .into_iter()
                .filter_map(|n| tensors.remove_entry(&n))
                .collect();
            // Built as if tied so that no `lm_head.weight` is required, then the real flag is
            // restored: it is written back to config.json on save and must stay truthful.
            let tied = config.tie_word_embeddings;
            let body_config = ModelConfig {
                tie_word_embeddings: true,
                ..config
            };
            let (mut model, params) = CausalLm::from_tensors(
                body_config,
                tensors,
                &origin,
                opts.precision,
                opts.trainable,
            )?;
            model.config.tie_word_embeddings = tied;
            Ok(Backbone {
                pretrained: Pretrained {
                    model,
                    tokenizer,
                    params,
                    source: ModelSource::Folder(dir),
                },
                extra,
            })
        }
    }
}

/// Whether a tensor belongs to the decoder body: `model.*` for the Llama family; GPT-2's
/// `transformer.*`, or its prefix-less names in the hub's original `gpt2` files.
fn is_body(name: &str, gpt2: bool) -> bool {
    if !gpt2 {
        return name.starts_with("model.");
    }
    ["transformer.", "wte.", "wpe.", "h.", "ln_f."]
        .iter()
        .any(|p| name.starts_with(p))
}
