//! Batched generation with a KV cache: greedy, temperature, top-k, top-p, repetition penalty,
//! stop at any EOS id or stop string; seeded and reproducible.
use crate::error::Result;
use crate::model::{CausalLm, InputBatch, KvCache};
use crate::ops::SHARED_SEGMENT;
use crate::sample::pick_rows;
pub use crate::sample::{distribution, top_tokens};
use crate::tokenizer::Tokenizer;
use candle_core::Tensor;
use rand::{rngs::StdRng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Sampling settings; the defaults are transformers' (`temperature` 0 means greedy here).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// Maximum number of new tokens per row. Default 128.
    pub max_new_tokens: usize,
    /// 0 = greedy; otherwise logits are divided by it. Default 0.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off). Default 0.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0 = off). Default 1.0.
    pub top_p: f32,
    /// CTRL-style penalty on tokens already present (1.0 = off). Default 1.0.
    pub repetition_penalty: f32,
    /// Seed of the sampler. Default 0.
    pub seed: u64,
    /// Generation also stops when the decoded completion contains one of these.
    pub stop_strings: Vec<String>,
}

/// A stop string as typed on a command line: `\n`, `\t`, `\r` and `\\` are a newline, a tab, a
/// carriage return and a backslash (a shell passes `"\n\n"` as backslash-n twice); any other
/// backslash stays as it is.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let escaped = match (c, chars.peek()) {
            ('\\', Some('n')) => '\n',
            ('\\', Some('t')) => '\t',
            ('\\', Some('r')) => '\r',
            ('\\', Some('\\')) => '\\',
            _ => {
                out.push(c);
                continue;
            }
        };
        chars.next();
        out.push(escaped);
    }
    out
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
            stop_strings: vec![],
        }
    }
}

/// One row's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New tokens, including the EOS token when one ended the row.
    pub tokens: Vec<u32>,
    /// Decoded completion without special tokens, cut at a stop string.
    pub text: String,
    /// Whether the row ended on an EOS id or a stop string (not on `max_new_tokens`).
    pub finished: bool,
}

/// Generates a completion for each prompt (token ids), all rows in one left-padded batch.
pub fn generate(
    model: &CausalLm,
    tok: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
) -> Result<Vec<Generation>> {
    // On a worker of rayon's pool, so that the kernels' parallel loops start from a pool
    // thread (which works on its share) instead of a caller that sleeps until the workers are
    // done and is woken again: ~13,000 such round trips in a 64-token rollout of a 30-layer
    // model, 9% of its time on 2 cores.
    let run = || crate::gemv::decoding(|| generate_inner(model, tok, prompts, cfg, None));
    rayon::join(run, || ()).0
}

/// What an observer of [`generate_observed`] sees at every sampling step of every live row.
#[derive(Debug)]
pub struct Step<'a> {
    pub row: usize,
    /// 0-based index of the new token within the row's completion.
    pub step: usize,
    /// The model's raw next-token logits `(V)`, before any processor.
    pub logits: &'a [f32],
    /// Prompt and completion so far (what the repetition penalty sees).
    pub seen: &'a [u32],
    /// The token that was chosen.
    pub token: u32,
}

/// [`generate`], calling `observer` after each token is chosen (the next-token view).
pub fn generate_observed(
    model: &CausalLm,
    tok: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    observer: &mut dyn FnMut(Step<'_>),
) -> Result<Vec<Generation>> {
    crate::gemv::decoding(|| generate_inner(model, tok, prompts, cfg, Some(observer)))
}

fn generate_inner(
    model: &CausalLm,
    tok: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    mut observer: Option<&mut dyn FnMut(Step<'_>)>,
) -> Result<Vec<Generation>> {
    let b = prompts.len();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut cache = KvCache {
        capacity_hint: longest + cfg.max_new_tokens,
        ..Default::default()
    };
    let mut out: Vec<Vec<u32>> = vec![vec![]; b];
    let mut done = vec![false; b];
    let mut texts = vec![String::new(); b];
    // Prefill (left-padded, or around a shared prefix) -> each row's last prompt position.
    let mut hidden = prefill(model, prompts, tok.pad_id, &mut cache, PACKED_MAX)?;
    let mut pos: Vec<u32> = prompts.iter().map(|p| p.len() as u32).collect();
    // Rows still generating, by index into `prompts`: the batch (and cache) holds only them,
    // so a finished row costs nothing. Every kernel computes a row the same way whatever the
    // batch, so dropping rows does not change the others' tokens.
    let mut active: Vec<usize> = (0..b).collect();
    for _ in 0..cfg.max_new_tokens {
        let t = hidden.dim(1)?;
        // (B_active, 1, H) -> (B_active, V)
        let logits = model.logits(&hidden.narrow(1, t - 1, 1)?)?.squeeze(1)?;
        let mut rows: Vec<Vec<f32>> = logits.to_dtype(candle_core::DType::F32)?.to_vec2()?;
        let mut next = vec![tok.pad_id; b];
        let seen: Vec<Vec<u32>> = active
            .iter()
            .map(|&i| [prompts[i].as_slice(), out[i].as_slice()].concat())
            .collect();
        // Picking edits the logits in place (repetition penalty): the observer gets a copy.
        let raw = observer.as_ref().map(|_| rows.clone());
        let picked = pick_rows(&mut rows, &seen, cfg, &mut rng);
        for (j, &i) in active.iter().enumerate() {
            next[i] = picked[j];
            if let (Some(obs), Some(raw)) = (observer.as_mut(), &raw) {
                obs(Step {
                    row: i,
                    step: out[i].len(),
                    logits: &raw[j],
                    seen: &seen[j],
                    token: next[i],
                });
            }
            out[i].push(next[i]);
            done[i] = finish_row(tok, cfg, &out[i], &mut texts[i])?;
        }
        let keep: Vec<usize> = (0..active.len()).filter(|&j| !done[active[j]]).collect();
        if keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            cache.keep_rows(&keep)?;
            active = keep.iter().map(|&j| active[j]).collect();
        }
        let n = active.len();
        let step = InputBatch {
            ids: active.iter().map(|&i| next[i]).collect(),
            segments: vec![1; n],
            positions: active.iter().map(|&i| pos[i]).collect(),
            b: n,
            t: 1,
        };
        hidden = model.forward_cached(&step, &mut cache)?;
        pos.iter_mut().for_each(|p| *p += 1);
    }
    (0..b)
        .map(|i| {
            let finished = done[i];
            let text = if finished {
                texts[i].clone()
            } else {
                tok.decode(&out[i], true)?
            };
            Ok(Generation {
                tokens: std::mem::take(&mut out[i]),
                text,
                finished,
            })
        })
        .collect()
}

/// Shortest common prefix worth computing once: below it the extra pass costs more than it saves.
const MIN_SHARED_PREFIX: usize = 8;

/// Longest packed prefill row: its attention scores grow with the square of the row (a
/// left-padded batch's with the batch times the square of one prompt).
const PACKED_MAX: usize = 1024;

/// Runs the prompts through the model into `cache`; returns the hidden states `(B, T, H)` whose
/// last position is every row's last prompt token.
///
/// Chat prompts share their template's opening (a system prompt, the user header) and RLOO/GRPO
/// rows repeat whole prompts: the common prefix is computed once, and in the packed row each
/// distinct prompt's rest once. Up to `packed_max` positions
/// the batch runs as one packed row, `[prefix | rest_0 | rest_1 | ...]`, each rest attending to
/// the prefix and to itself (the prefix's segment is [`SHARED_SEGMENT`]) and no padding at all
/// (a left-padded batch computes every row as long as the longest prompt); the cache is then
/// unpacked to one row per prompt, `[prefix | padding | rest]`. Longer, the prefix runs alone,
/// its cache is copied to every row and the rests follow left-padded.
fn prefill(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    pad_id: u32,
    cache: &mut KvCache,
    packed_max: usize,
) -> Result<Tensor> {
    let shared = common_prefix(prompts);
    if prompts.len() < 2 || shared < MIN_SHARED_PREFIX {
        return Ok(model.forward_cached(&InputBatch::padded(prompts, pad_id, true), cache)?);
    }
    // The packed row holds each distinct rest once.
    let distinct: std::collections::HashSet<&[u32]> =
        prompts.iter().map(|p| &p[shared..]).collect();
    if shared + distinct.iter().map(|r| r.len()).sum::<usize>() > packed_max {
        let prefix = InputBatch::padded(&[prompts[0][..shared].to_vec()], pad_id, true);
        model.forward_cached(&prefix, cache)?;
        cache.keep_rows(&vec![0; prompts.len()])?;
        let rests: Vec<Vec<u32>> = prompts.iter().map(|p| p[shared..].to_vec()).collect();
        let mut rest = InputBatch::padded(&rests, pad_id, true);
        rest.positions.iter_mut().for_each(|p| *p += shared as u32);
        return Ok(model.forward_cached(&rest, cache)?);
    }
    prefill_packed(model, prompts, shared, cache)
}

/// The packed prefill of [`prefill`]. Identical prompts (RLOO/GRPO's samples of one prompt)
/// share one rest in the packed row.
fn prefill_packed(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    shared: usize,
    cache: &mut KvCache,
) -> Result<Tensor> {
    let mut packed = InputBatch {
        ids: prompts[0][..shared].to_vec(),
        segments: vec![SHARED_SEGMENT; shared],
        positions: (0..shared as u32).collect(),
        b: 1,
        t: 0,
    };
    // Each row's rest as (start, length) in the packed row; a repeated rest reuses its span.
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(prompts.len());
    let mut seen: std::collections::HashMap<&[u32], (usize, usize)> = Default::default();
    for (i, p) in prompts.iter().enumerate() {
        let rest = &p[shared..];
        if let Some(&span) = seen.get(rest) {
            spans.push(span);
            continue;
        }
        let span = (packed.ids.len(), rest.len());
        seen.insert(rest, span);
        spans.push(span);
        packed.ids.extend_from_slice(rest);
        packed
            .segments
            .extend(std::iter::repeat_n(i as u32 + 1, rest.len()));
        packed.positions.extend(shared as u32..p.len() as u32);
    }
    packed.t = packed.ids.len();
    let hidden = model.forward_cached(&packed, cache)?; // (1, T, H)
    cache.unpack_rows(shared, &spans)?;
    // Each prompt's last position: (B, H) -> (B, 1, H).
    let ends: Vec<u32> = spans.iter().map(|&(at, n)| (at + n - 1) as u32).collect();
    let ends = Tensor::new(ends.as_slice(), hidden.device())?;
    Ok(hidden.squeeze(0)?.index_select(&ends, 0)?.unsqueeze(1)?)
}

/// Length of the prefix all prompts share, leaving every prompt at least one token of its own
/// (the pass over the rests must yield each row's last hidden state).
fn common_prefix(prompts: &[Vec<u32>]) -> usize {
    let Some(first) = prompts.first() else {
        return 0;
    };
    let shortest = prompts.iter().map(Vec::len).min().unwrap_or(0);
    (0..shortest.saturating_sub(1))
        .take_while(|&j| prompts.iter().all(|p| p[j] == first[j]))
        .count()
}

/// Whether a row is finished after its latest token; fills `text` when it is.
fn finish_row(
    tok: &Tokenizer,
    cfg: &SamplingConfig,
    out: &[u32],
    text: &mut String,
) -> Result<bool> {
    let last = *out.last().unwrap_or(&u32::MAX);
    if tok.eos_ids.contains(&last) {
        *text = tok.decode(out, true)?;
        return Ok(true);
    }
    if cfg.stop_strings.is_empty() {
        return Ok(false);
    }
    let decoded = tok.decode(out, true)?;
    match cfg
        .stop_strings
        .iter()
        .filter_map(|s| decoded.find(s.as_str()))
        .min()
    {
        Some(at) => {
            *text = decoded[..at].to_string();
            Ok(true)
        }
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_read_escapes_as_meant() {
        assert_eq!(unescape(r"\n\n"), "\n\n");
        assert_eq!(unescape(r"a\tb\r\n"), "a\tb\r\n");
        assert_eq!(unescape(r"C:\\dir\\n"), r"C:\dir\n");
        assert_eq!(unescape(r"\x \ end\"), r"\x \ end\");
        assert_eq!(unescape("Ende\n"), "Ende\n");
    }

    /// Every prefill (left-padded; prefix once then padded rests; packed) leaves each row's last
    /// prompt position with the same hidden state, and a cache that the next step reads alike.
    #[test]
    fn the_three_prefills_agree() -> Result<()> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny-llama");
        let model = crate::load(dir, &Default::default())?.model;
        let head: Vec<u32> = (10..20).collect();
        // The last prompt repeats the first (one rest for both in the packed row).
        let prompts: Vec<Vec<u32>> = [&[5u32][..], &[40, 41, 42], &[7, 3, 9, 9], &[5]]
            .iter()
            .map(|rest| [head.as_slice(), rest].concat())
            .collect();
        let run = |shared: bool, packed_max: usize| -> Result<(Vec<f32>, Vec<f32>)> {
            crate::gemv::decoding(|| {
                let mut cache = KvCache::default();
                let h = if shared {
                    prefill(&model, &prompts, 0, &mut cache, packed_max)?
                } else {
                    model.forward_cached(&InputBatch::padded(&prompts, 0, true), &mut cache)?
                };
                let t = h.dim(1)?;
                let last = h.narrow(1, t - 1, 1)?.flatten_all()?.to_vec1::<f32>()?;
                let step = InputBatch {
                    ids: vec![3, 4, 5, 6],
                    segments: vec![1; 4],
                    positions: prompts.iter().map(|p| p.len() as u32).collect(),
                    b: 4,
                    t: 1,
                };
                let next = model.forward_cached(&step, &mut cache)?;
                Ok((last, next.flatten_all()?.to_vec1::<f32>()?))
            })
        };
        let padded = run(false, 0)?;
        for (how, got) in [("two passes", run(true, 0)?), ("packed", run(true, 1024)?)] {
            for (a, b) in [(&padded.0, &got.0), (&padded.1, &got.1)] {
                let d = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(d < 1e-4, "{how}: {d}");
            }
        }
        Ok(())
    }

    #[test]
    fn the_common_prefix_leaves_every_prompt_a_token_of_its_own() {
        let p = |v: &[u32]| v.to_vec();
        assert_eq!(common_prefix(&[p(&[1, 2, 3, 4]), p(&[1, 2, 3, 9, 9])]), 3);
        assert_eq!(common_prefix(&[p(&[1, 2, 3]), p(&[1, 2, 3])]), 2);
        assert_eq!(common_prefix(&[p(&[1, 2, 3]), p(&[1, 2, 3, 4])]), 2);
        assert_eq!(common_prefix(&[p(&[7, 2]), p(&[1, 2])]), 0);
        assert_eq!(common_prefix(&[p(&[5, 6, 7])]), 2);
        assert_eq!(common_prefix(&[]), 0);
    }
}
