//! Tokenizer (Hugging Face `tokenizers`) plus the model's chat template (minijinja).
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::str::FromStr;

/// One chat turn, as in TRL's conversational datasets. Fields besides `role` and `content`
/// (`tool_calls`, `name`, `tool_call_id`, `reasoning_content`, ...) are kept and handed to the
/// chat template as they are. `content` is required, except on a turn that calls tools, where
/// it may be missing or null (OpenAI's format) and reads as empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawMessage")]
pub struct Message {
    pub role: String,
    pub content: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
            extra: Default::default(),
        }
    }
}

/// A message as written, before the `content` rule is checked.
#[derive(Deserialize)]
#[serde(expecting = "a message {\"role\", \"content\"}")]
struct RawMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

impl TryFrom<RawMessage> for Message {
    type Error = String;

    fn try_from(r: RawMessage) -> std::result::Result<Self, String> {
        let content = match r.content {
            Some(c) => c,
            None if r.extra.get("tool_calls").is_some_and(|c| !c.is_null()) => String::new(),
            None => return Err(format!("a `{}` message without `content`", r.role)),
        };
        Ok(Message {
            role: r.role,
            content,
            extra: r.extra,
        })
    }
}

/// A prompt or completion: plain text or a message list (TRL accepts both). Read by hand, not
/// as an untagged enum, so a wrong value says what it may be (serde's untagged error reads
/// "data did not match any variant of untagged enum TextOrMessages") and a bad message says
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TextOrMessages {
    Text(String),
    Messages(Vec<Message>),
}

/// What a prompt or completion may be, for error messages.
pub const TEXT_OR_MESSAGES: &str = "a string, or a list of {\"role\", \"content\"} messages";

impl<'de> Deserialize<'de> for TextOrMessages {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = TextOrMessages;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(TEXT_OR_MESSAGES)
            }
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<Self::Value, E> {
                Ok(TextOrMessages::Text(v.into()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut messages = vec![];
                while let Some(m) = seq.next_element::<Message>()? {
                    messages.push(m);
                }
                Ok(TextOrMessages::Messages(messages))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The tokenizer and everything around it that generation and training need.
#[derive(Clone)]
pub struct Tokenizer {
    pub inner: tokenizers::Tokenizer,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Every id that ends generation (tokenizer EOS, config and generation_config EOS ids).
    pub eos_ids: Vec<u32>,
    pub pad_id: u32,
    /// `tokenizer_config.json` as read, preserved on save.
    pub config_json: serde_json::Value,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.vocab_size())
            .field("eos_ids", &self.eos_ids)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

fn token_str(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        // Older files store AddedToken objects: {"content": "...", ...}.
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(String::from),
        _ => None,
    }
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Json {
            path: path.to_path_buf(),
            source: e,
        })
}

/// The template from `chat_template.jinja` if present, else from `tokenizer_config.json`
/// (a string, or a list of named templates of which `default` is taken).
fn template_from(dir: &Path, cfg: &serde_json::Value) -> Result<Option<String>> {
    let file = dir.join("chat_template.jinja");
    if file.exists() {
        return std::fs::read_to_string(&file)
            .map(Some)
            .map_err(|e| Error::io(&file, e));
    }
    Ok(match cfg.get("chat_template") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .or(list.first())
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(String::from),
        _ => None,
    })
}

impl Tokenizer {
    /// Loads `tokenizer.json`, `tokenizer_config.json`, the chat template and the generation
    /// config's EOS ids from a model folder. `config_eos` are the EOS ids of config.json.
    pub fn from_folder(dir: &Path, config_eos: &[u32]) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(Error::Tokenizer(format!("{} is missing", path.display())));
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let cfg = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or_default();
        let gen = read_json(&dir.join("generation_config.json"))?.unwrap_or_default();
        let template = template_from(dir, &cfg)?;
        Self::assemble(inner, cfg, &gen, template, config_eos)
    }

    /// A word-level tokenizer `t0 .. t{vocab-1}` for random-init models, which ship none:
    /// generation only needs ids (and a decode for the returned text).
    pub fn placeholder(vocab: usize) -> Result<Self> {
        let words: serde_json::Map<String, serde_json::Value> = (0..vocab)
            .map(|i| (format!("t{i}"), serde_json::json!(i)))
            .collect();
        let spec = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": words, "unk_token": "t0"},
        });
        Self::from_parts(&spec, serde_json::json!({}), &serde_json::json!({}), &[])
    }

    /// Builds from JSON parts (what the GGUF reader produces).
    pub fn from_parts(
        tokenizer_json: &serde_json::Value,
        tokenizer_config: serde_json::Value,
        generation_config: &serde_json::Value,
        config_eos: &[u32],
    ) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_str(&tokenizer_json.to_string())
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let template = template_from(Path::new("/nonexistent"), &tokenizer_config)?;
        Self::assemble(
            inner,
            tokenizer_config,
            generation_config,
            template,
            config_eos,
        )
    }

    fn assemble(
        inner: tokenizers::Tokenizer,
        cfg: serde_json::Value,
        gen: &serde_json::Value,
        chat_template: Option<String>,
        config_eos: &[u32],
    ) -> Result<Self> {
        let bos_token = token_str(cfg.get("bos_token"));
        let eos_token = token_str(cfg.get("eos_token"));
        let mut eos_ids: Vec<u32> = crate::config::token_ids(&gen.get("eos_token_id").cloned());
        eos_ids.extend_from_slice(config_eos);
        if let Some(id) = eos_token.as_deref().and_then(|t| inner.token_to_id(t)) {
            eos_ids.push(id);
        }
        eos_ids.sort_unstable();
        eos_ids.dedup();
        let pad_id = token_str(cfg.get("pad_token"))
            .and_then(|t| inner.token_to_id(&t))
            .or_else(|| {
                crate::config::token_ids(&gen.get("pad_token_id").cloned())
                    .first()
                    .copied()
            })
            .or(eos_ids.first().copied())
            .unwrap_or(0);
        Ok(Tokenizer {
            inner,
            chat_template,
            bos_token,
            eos_token,
            eos_ids,
            pad_id,
            config_json: cfg,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`; `special` adds the tokenizer's own BOS/EOS post-processing.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Renders messages with the chat template, as transformers' `apply_chat_template`.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.apply_chat_template_tools(messages, None, add_generation_prompt)
    }

    /// [`Self::apply_chat_template`] with tool schemas (`apply_chat_template(..., tools=...)`).
    pub fn apply_chat_template_tools(
        &self,
        messages: &[Message],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| Error::Template("the model has no chat template".into()))?;
        crate::chat::render(
            template,
            messages,
            tools,
            add_generation_prompt,
            self.bos_token.as_deref().unwrap_or(""),
            self.eos_token.as_deref().unwrap_or(""),
        )
    }

    /// The template's render of a whole conversation and the byte spans of its
    /// `{% generation %}` blocks, or `None` when the template has no such blocks.
    pub fn render_generation_spans(
        &self,
        messages: &[Message],
        tools: Option<&serde_json::Value>,
    ) -> Result<Option<crate::chat::MarkedRender>> {
        let Some(template) = self.chat_template.as_deref() else {
            return Ok(None);
        };
        if !crate::chat::has_generation_blocks(template) {
            return Ok(None);
        }
        let specials = (
            self.bos_token.as_deref().unwrap_or(""),
            self.eos_token.as_deref().unwrap_or(""),
        );
        crate::chat::render_generation_spans(template, messages, tools, false, specials).map(Some)
    }

    /// Prompt text for generation: a string is used as is, messages go through the template.
    pub fn prompt_text(&self, prompt: &TextOrMessages) -> Result<String> {
        match prompt {
            TextOrMessages::Text(t) => Ok(t.clone()),
            TextOrMessages::Messages(m) => self.apply_chat_template(m, true),
        }
    }

    /// Ids of a prompt ready for generation. Templated text already carries its special tokens,
    /// so (as transformers does) no extra BOS is added to it.
    pub fn encode_prompt(&self, prompt: &TextOrMessages) -> Result<Vec<u32>> {
        match prompt {
            TextOrMessages::Text(t) => self.encode(t, true),
            TextOrMessages::Messages(_) => self.encode(&self.prompt_text(prompt)?, false),
        }
    }
}

impl Tokenizer {
    /// Splits a conversation into the templated prompt (with the generation prompt) and the
    /// templated completion: the completion is what the full render adds after the prompt.
    pub fn render_pair(
        &self,
        prompt: &[Message],
        completion: &[Message],
    ) -> Result<(String, String)> {
        let p = self.apply_chat_template(prompt, true)?;
        let all: Vec<Message> = prompt.iter().chain(completion).cloned().collect();
        let full = self.apply_chat_template(&all, false)?;
        match full.strip_prefix(&p) {
            Some(rest) => Ok((p, rest.to_string())),
            None => Err(Error::Template(
                "the rendered conversation does not start with the rendered prompt".into(),
            )),
        }
    }

    /// Token ids of a prompt and its completion, as TRL builds them: a text prompt gets the
    /// tokenizer's special tokens (e.g. BOS), templated text already has them; the completion
    /// never gets extra specials. With `add_eos`, an EOS id is appended unless the completion
    /// already holds one (a chat template usually closes the turn itself).
    pub fn encode_pair(
        &self,
        prompt: &TextOrMessages,
        completion: &TextOrMessages,
        add_eos: bool,
    ) -> Result<crate::logprobs::PromptCompletion> {
        let (p_ids, c_text) = match (prompt, completion) {
            (TextOrMessages::Text(p), TextOrMessages::Text(c)) => {
                (self.encode(p, true)?, c.clone())
            }
            (TextOrMessages::Messages(p), TextOrMessages::Messages(c)) => {
                let (pt, ct) = self.render_pair(p, c)?;
                (self.encode(&pt, false)?, ct)
            }
            (TextOrMessages::Messages(p), TextOrMessages::Text(c)) => (
                self.encode(&self.apply_chat_template(p, true)?, false)?,
                c.clone(),
            ),
            (TextOrMessages::Text(_), TextOrMessages::Messages(_)) => {
                return Err(Error::Invalid(
                    "a text prompt with a message-list completion; use messages for both".into(),
                ))
            }
        };
        let mut c_ids = self.encode(&c_text, false)?;
        if add_eos && !c_ids.iter().any(|t| self.eos_ids.contains(t)) {
            if let Some(&e) = self.eos_ids.first() {
                c_ids.push(
                    self.eos_token
                        .as_deref()
                        .and_then(|t| self.inner.token_to_id(t))
                        .unwrap_or(e),
                );
            }
        }
        Ok(crate::logprobs::PromptCompletion {
            prompt: p_ids,
            completion: c_ids,
        })
    }
}
