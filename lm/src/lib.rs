//! Rudder's model core: a trainable decoder (Llama, Mistral, Qwen2, Qwen3, GPT-2, and the
//! Mixture-of-Experts Mixtral, Qwen2-MoE, Qwen3-MoE) that
//! matches transformers, its tokenizer and chat template, loading from HF folders, the hub cache
//! or GGUF, generation with a KV cache, log-probs, and saving.
pub mod attn_decode;
pub mod backbone;
pub mod chat;
mod chat_json;
pub mod checkpoint;
pub mod config;
pub mod dropout;
pub mod error;
pub mod fused;
pub mod gemv;
pub mod generate;
pub mod gguf;
pub mod gpt2;
pub mod jsonl;
pub mod kv_cache;
pub mod linear;
pub mod load;
pub mod logprobs;
pub mod lora;
pub mod model;
pub mod moe;
pub mod ops;
mod rope;
pub mod sample;
pub mod save;
pub mod settings;
pub mod tokenizer;
pub mod weights;

pub use config::{Arch, ModelConfig};
pub use error::{Error, Result};
pub use load::{load, LoadOptions, ModelSource, Pretrained};
pub use model::{CausalLm, InputBatch, KvCache};
pub use tokenizer::{Message, TextOrMessages, Tokenizer};
pub use weights::Precision;
