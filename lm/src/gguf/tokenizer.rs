//! `tokenizer.ggml.*` metadata → HF `tokenizer.json`, `tokenizer_config.json` and
//! `generation_config.json`.
//!
//! GGUF keeps only the vocabulary, merges, token types, special ids and a *name* for the
//! pre-tokenizer (`tokenizer.ggml.pre`); the HF pipeline around the BPE model is rebuilt from
//! that name, mirroring what each original `tokenizer.json` contained.

use serde_json::{json, Map, Value as Json};

use super::{GgufError, Meta};

/// llama.cpp token types (gguf-py `TokenType`).
const TOKEN_TYPE_UNKNOWN: i64 = 2;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The tokenizer metadata, validated.
#[derive(Debug, Clone)]
pub(crate) struct TokenizerParts {
    tokens: Vec<String>,
    token_types: Vec<i64>,
    merges: Vec<(String, String)>,
    pre: String,
    pub bos_id: Option<usize>,
    pub eos_id: Option<usize>,
    pub pad_id: Option<usize>,
    unk_id: Option<usize>,
    add_bos: bool,
    add_eos: bool,
    chat_template: Option<String>,
}

impl TokenizerParts {
    pub(crate) fn from_meta(meta: &Meta<'_>) -> Result<Self, GgufError> {
        let model = meta.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(unsupported(
                meta,
                format!("tokenizer.ggml.model `{model}` (supported: gpt2, i.e. byte-level BPE)"),
            ));
        }
        let tokens: Vec<String> = meta
            .string_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_string)
            .collect();
        // Optional in GGUF; absent means every token is a normal one.
        let token_types = if meta.has("tokenizer.ggml.token_type") {
            meta.int_array("tokenizer.ggml.token_type")?
        } else {
            vec![1; tokens.len()]
        };
        if token_types.len() != tokens.len() {
            return Err(GgufError::BadValue {
                path: meta.path(),
                key: "tokenizer.ggml.token_type".into(),
                expected: "one entry per token",
                found: format!("{} entries for {} tokens", token_types.len(), tokens.len()),
            });
        }
        let id = |key: &str| token_id(meta, key, tokens.len());
        Ok(Self {
            merges: merges(meta)?,
            pre: meta
                .opt_str("tokenizer.ggml.pre")?
                .unwrap_or("default")
                .to_string(),
            bos_id: id("tokenizer.ggml.bos_token_id")?,
            eos_id: id("tokenizer.ggml.eos_token_id")?,
            pad_id: id("tokenizer.ggml.padding_token_id")?,
            unk_id: id("tokenizer.ggml.unknown_token_id")?,
            add_bos: meta
                .opt_bool("tokenizer.ggml.add_bos_token")?
                .unwrap_or(false),
            add_eos: meta
                .opt_bool("tokenizer.ggml.add_eos_token")?
                .unwrap_or(false),
            chat_template: meta.opt_str("tokenizer.chat_template")?.map(str::to_string),
            tokens,
            token_types,
        })
    }

    fn token(&self, id: Option<usize>) -> Json {
        id.map_or(Json::Null, |i| json!(self.tokens[i]))
    }

    /// The complete HF `tokenizer.json`.
    pub(crate) fn tokenizer_json(&self, meta: &Meta<'_>) -> Result<Json, GgufError> {
        let (normalizer, pre_tokenizer) = pipeline_for(meta, &self.pre)?;
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": self.added_tokens(),
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": self.post_processor(),
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": self.bpe_model(),
        }))
    }

    fn bpe_model(&self) -> Json {
        let mut vocab = Map::with_capacity(self.tokens.len());
        for (id, tok) in self.tokens.iter().enumerate() {
            // Duplicate strings can exist in GGUF vocabularies; HF keeps one id per string, and
            // the first is the one llama.cpp's lookup returns too.
            vocab.entry(tok.clone()).or_insert(json!(id));
        }
        let merges: Vec<Json> = self.merges.iter().map(|(a, b)| json!([a, b])).collect();
        json!({
            "type": "BPE",
            "dropout": null,
            "unk_token": self.token(self.unk_id),
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            // Llama-3's tokenizer looks whole pre-tokens up in the vocab before merging.
            "ignore_merges": self.pre == "llama-bpe",
            "vocab": vocab,
            "merges": merges,
        })
    }

    /// Control / unknown tokens are HF special tokens; user-defined ones are plain added tokens.
    fn added_tokens(&self) -> Vec<Json> {
        let kinds = [
            TOKEN_TYPE_UNKNOWN,
            TOKEN_TYPE_CONTROL,
            TOKEN_TYPE_USER_DEFINED,
        ];
        self.token_types
            .iter()
            .enumerate()
            .filter(|(_, ty)| kinds.contains(ty))
            .map(|(id, ty)| {
                json!({
                    "id": id,
                    "content": self.tokens[id],
                    "single_word": false,
                    "lstrip": false,
                    "rstrip": false,
                    "normalized": false,
                    "special": *ty != TOKEN_TYPE_USER_DEFINED,
                })
            })
            .collect()
    }

    /// With `add_bos_token` the BOS is prepended like HF's Llama-3 template; otherwise the
    /// byte-level post-processor (a no-op on ids) that GPT-2-style tokenizers ship.
    fn post_processor(&self) -> Json {
        match (self.add_bos, self.bos_id) {
            (true, Some(bos)) => {
                let tok = &self.tokens[bos];
                json!({
                    "type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [
                        {"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                        {"SpecialToken": {"id": tok, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}
                    ],
                    "special_tokens": {tok.as_str(): {"id": tok, "ids": [bos], "tokens": [tok]}},
                })
            }
            _ => {
                json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})
            }
        }
    }

    pub(crate) fn tokenizer_config(&self, model_max_length: usize) -> Json {
        json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": self.token(self.bos_id),
            "eos_token": self.token(self.eos_id),
            "pad_token": self.token(self.pad_id),
            "unk_token": self.token(self.unk_id),
            "add_bos_token": self.add_bos,
            "add_eos_token": self.add_eos,
            "chat_template": self.chat_template,
            "model_max_length": model_max_length,
            "clean_up_tokenization_spaces": false,
        })
    }

    pub(crate) fn generation_config(&self) -> Json {
        json!({ "bos_token_id": self.bos_id, "eos_token_id": self.eos_id })
    }
}

fn unsupported(meta: &Meta<'_>, what: String) -> GgufError {
    GgufError::UnsupportedTokenizer {
        path: meta.path(),
        what,
    }
}

/// An optional special-token id; present ids must index the vocabulary.
fn token_id(meta: &Meta<'_>, key: &str, n_tokens: usize) -> Result<Option<usize>, GgufError> {
    match meta.opt_usize(key)? {
        Some(id) if id >= n_tokens => Err(GgufError::BadValue {
            path: meta.path(),
            key: key.to_string(),
            expected: "a token id inside the vocabulary",
            found: format!("{id} (vocabulary has {n_tokens} tokens)"),
        }),
        other => Ok(other),
    }
}

/// GGUF merges are `"left right"` strings; byte-level tokens never contain a plain space.
fn merges(meta: &Meta<'_>) -> Result<Vec<(String, String)>, GgufError> {
    let key = "tokenizer.ggml.merges";
    meta.string_array(key)?
        .into_iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok((a.to_string(), b.to_string())),
            None => Err(GgufError::BadValue {
                path: meta.path(),
                key: key.to_string(),
                expected: "merges of the form `left right`",
                found: format!("{m:?}"),
            }),
        })
        .collect()
}

/// (normalizer, pre_tokenizer) of the original HF tokenizer behind each llama.cpp pre name.
fn pipeline_for(meta: &Meta<'_>, pre: &str) -> Result<(Json, Json), GgufError> {
    let byte_level = |trim: bool, use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": trim, "use_regex": use_regex});
    let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    let seq = |items: Vec<Json>| json!({"type": "Sequence", "pretokenizers": items});
    match pre {
        // SmolLM / StarCoder: every digit is its own pre-token, then GPT-2's byte-level regex.
        "smollm" | "starcoder" | "refact" => Ok((
            Json::Null,
            seq(vec![
                json!({"type": "Digits", "individual_digits": true}),
                byte_level(true, true),
            ]),
        )),
        "gpt-2" | "gpt2" => Ok((Json::Null, byte_level(true, true))),
        "llama-bpe" => Ok((Json::Null, seq(vec![split(LLAMA3_REGEX), byte_level(true, false)]))),
        "qwen2" => Ok((
            json!({"type": "NFC"}),
            seq(vec![split(QWEN2_REGEX), byte_level(false, false)]),
        )),
        other => Err(unsupported(
            meta,
            format!("tokenizer.ggml.pre `{other}` (supported: smollm, starcoder, refact, gpt-2, llama-bpe, qwen2)"),
        )),
    }
}
