//! Scoring completions: the reward model on the final token, an external command
//! (`--reward-cmd`), or a function (rule-based rewards from library users and tests).
use crate::prompts::Prompt;
use crate::{Error, Result};
use reward_model::RewardModel;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

/// A rule reward: `(prompt, completion text, completion ids) -> reward`.
pub type RuleFn = Box<dyn Fn(&Prompt, &str, &[u32]) -> f64 + Send>;

/// Where rewards come from.
pub enum Scorer {
    /// A reward model. With `same_vocab` it reads the policy's token ids directly, otherwise
    /// it re-tokenizes the prompt text plus the completion text with its own tokenizer.
    Model {
        rm: Box<RewardModel>,
        same_vocab: bool,
    },
    /// A shell command: `{"prompt","completion"}` JSONL on stdin, one number per line out.
    Command(String),
    Rule(RuleFn),
}

/// One completion to score.
pub struct Item<'a> {
    pub prompt: &'a Prompt,
    pub completion_ids: &'a [u32],
    pub completion_text: &'a str,
}

impl Scorer {
    /// Wraps a reward model, checking whether it shares the policy's vocabulary.
    pub fn model(rm: RewardModel, policy_tok: &lm::Tokenizer) -> Result<Self> {
        let probe = "Hello, world! 12345 <b>é</b>";
        let same_vocab = rm.tokenizer.vocab_size() == policy_tok.vocab_size()
            && rm.tokenizer.encode(probe, false)? == policy_tok.encode(probe, false)?;
        if !same_vocab {
            tracing::warn!("reward model tokenizer differs from the policy's: re-tokenizing text");
        }
        Ok(Scorer::Model {
            rm: Box::new(rm),
            same_vocab,
        })
    }

    /// One raw reward per item, in order.
    pub fn score(&self, items: &[Item]) -> Result<Vec<f64>> {
        match self {
            Scorer::Model { rm, same_vocab } => {
                let rows = items
                    .iter()
                    .map(|it| match same_vocab {
                        true => Ok([it.prompt.ids.as_slice(), it.completion_ids].concat()),
                        false => Ok(rm
                            .tokenizer
                            .encode(&format!("{}{}", it.prompt.text, it.completion_text), false)?),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(rm.score(&rows)?.into_iter().map(f64::from).collect())
            }
            Scorer::Command(cmd) => run_command(cmd, items),
            Scorer::Rule(f) => Ok(items
                .iter()
                .map(|it| f(it.prompt, it.completion_text, it.completion_ids))
                .collect()),
        }
    }
}

fn run_command(cmd: &str, items: &[Item]) -> Result<Vec<f64>> {
    let fail = |reason: String| Error::Halted(format!("reward command `{cmd}`: {reason}"));
    let mut input = Vec::new();
    for it in items {
        let row = serde_json::json!({"prompt": it.prompt.value, "completion": it.completion_text});
        input.extend(serde_json::to_vec(&row).unwrap_or_default());
        input.push(b'\n');
    }
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| fail("no stdin".into()))?;
    // Written from a thread so a command that answers while still reading cannot deadlock.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("did not finish: {e}")))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(fail(format!("exited with {}", out.status)));
    }
    let mut rewards = Vec::with_capacity(items.len());
    for (i, line) in out.stdout.lines().enumerate() {
        let line = line.map_err(|e| fail(format!("output line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: f64 = line
            .trim()
            .parse()
            .map_err(|_| fail(format!("output line {}: `{line}` is not a number", i + 1)))?;
        rewards.push(v);
    }
    if rewards.len() != items.len() {
        return Err(fail(format!(
            "wrote {} rewards for {} completions",
            rewards.len(),
            items.len()
        )));
    }
    Ok(rewards)
}
