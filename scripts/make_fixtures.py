#!/usr/bin/env python3
"""Reference fixtures for Rudder's Rust model code, made with PyTorch + transformers.

Run (from the repo root, after scripts/setup-python.sh):

    .venv/bin/python scripts/make_fixtures.py            # (re)writes fixtures/
    .venv/bin/python scripts/make_fixtures.py --check    # rebuild in a temp dir, compare with fixtures/

Produces (all committed; CI never runs Python):
  fixtures/tiny-llama/        LlamaForCausalLM  (GQA, untied, llama3 rope scaling)  + tokenizer + reference.safetensors
  fixtures/tiny-llama-ref/    same architecture, perturbed weights (DPO reference model)
  fixtures/tiny-qwen2/        Qwen2ForCausalLM  (GQA, tied embeddings, qkv bias, rope_theta 1e6)
  fixtures/tiny-qwen3/        Qwen3ForCausalLM  (GQA, head_dim 32 != hidden/heads, q_norm/k_norm, untied)
  fixtures/tiny-mistral/      MistralForCausalLM (GQA, sliding_window null)
  fixtures/tokenizer_cases.json   plain-text and chat-template tokenizer cases
See fixtures/README.md for the tensor names/shapes. Everything is seeded, so re-running gives
byte-identical weights and (on the same torch build) identical reference tensors.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)  # deterministic CPU reductions, identical on re-runs

import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    GenerationConfig,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
VOCAB_SIZE = 384

# SmolLM2-Instruct's chat template (verbatim semantics): default system prompt when the first
# message is not a system message; `<|im_start|>role\ncontent<|im_end|>\n`; generation prompt
# `<|im_start|>assistant\n`.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TRAIN_TEXT = """\
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran away into the forest.
Reinforcement learning from human feedback trains a reward model on human preferences, then tunes a policy
against that reward with a penalty that keeps the policy close to a reference model.
You are a helpful assistant. The user asks a question and the assistant gives a short, honest answer.
What is the capital of France? The capital of France is Paris. What is two plus two? Two plus two is four.
In 2024 there were 365 days, and in 2025 there were 365 days as well; a leap year has 366 days.
Rust is a systems programming language that is fast, memory safe and fun to write. Python is slow but easy.
The model reads tokens, one after another, and predicts the next token. The next token is chosen greedily.
Direct preference optimization compares the chosen answer with the rejected answer under the policy and the
reference model, and pushes the policy towards the chosen answer and away from the rejected answer.
The weather today is sunny with a light breeze; tomorrow it will rain, and the day after it will snow.
She said: "Hello, world!" and he replied: "Hello there, how are you doing today?" They both laughed.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 2.71828 42 1024 4096.
Café, naïve, façade, jalapeño, Zürich, Ångström, 東京, 日本語, Привет, 🙂.
"""


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())  # no unk: byte-level covers every byte
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # adds no tokens
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = TRAIN_TEXT.splitlines(keepends=True)
    tok.train_from_iterator(lines * 3, trainer=trainer)
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        model_max_length=128,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        add_bos_token=False,
        add_eos_token=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    assert len(fast) == VOCAB_SIZE
    assert (fast.pad_token_id, fast.bos_token_id, fast.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    return fast


def encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def chat_ids(tokenizer, messages, add_generation_prompt: bool) -> tuple[str, list[int]]:
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if isinstance(out, dict) or hasattr(out, "keys"):  # transformers v5 returns a BatchEncoding
        out = out["input_ids"]
    ids = list(out)
    assert ids == encode(tokenizer, rendered), "apply_chat_template ids != tokenize(rendered)"
    return rendered, ids


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
COMMON = dict(
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-5,
    hidden_act="silu",
    initializer_range=0.02,
    pad_token_id=PAD_ID,
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
    use_cache=True,
)

# llama3 rope scaling. original_max_position_embeddings is 32 (not 16) so that with head_dim 16,
# theta 1e4 all three branches of the llama3 rule are hit: wavelen(i=0)=6.28 < 32/4 (kept),
# wavelen(i=1)=19.9 in [8, 32] (smoothed), wavelen(i>=2) > 32 (divided by factor).
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}


def make_config(kind: str, vocab: int):
    # transformers >= 5 stores rope_theta inside `rope_parameters` (the old `rope_theta` /
    # `rope_scaling` keys are folded into it); config.json is written in that new form.
    if kind == "llama":
        return LlamaConfig(
            vocab_size=vocab, head_dim=16, tie_word_embeddings=False,
            rope_parameters={"rope_theta": 10000.0, **LLAMA3_ROPE}, attention_bias=False, mlp_bias=False,
            **COMMON,
        )
    if kind == "qwen2":
        return Qwen2Config(
            vocab_size=vocab, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
            use_sliding_window=False, sliding_window=None, max_window_layers=2, **COMMON,
        )
    if kind == "qwen3":
        return Qwen3Config(
            vocab_size=vocab, head_dim=32, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
            attention_bias=False, use_sliding_window=False, sliding_window=None, max_window_layers=2, **COMMON,
        )
    if kind == "mistral":
        return MistralConfig(
            vocab_size=vocab, head_dim=16, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, sliding_window=None, **COMMON,
        )
    raise ValueError(kind)


def is_norm(name: str) -> bool:
    return name.endswith("norm.weight")  # input_layernorm, post_attention_layernorm, norm, q_norm, k_norm


@torch.no_grad()
def randomize(model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if is_norm(name):
            p.copy_(1.0 + 0.2 * noise)
        elif name.endswith(".bias"):
            p.copy_(0.1 * noise)
        elif "embed_tokens" in name:
            p.copy_(0.3 * noise)
        else:  # linear weights, lm_head
            p.copy_(0.15 * noise)


@torch.no_grad()
def perturb(model, seed: int, scale: float = 0.03) -> None:
    g = torch.Generator().manual_seed(seed)
    for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float32))


def build_model(kind: str, vocab: int, seed: int):
    cfg = make_config(kind, vocab)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    randomize(model, seed)
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def save_model(model, tokenizer, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, do_sample=False,
    )
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)  # tokenizer.json, tokenizer_config.json, chat_template.jinja
    # Also put the chat template into tokenizer_config.json (where SmolLM2 & most hub models keep
    # it) and name the class as transformers 4.x knows it, so both generations of loaders work.
    cfg_path = folder / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_path.read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_cfg["chat_template"] = CHAT_TEMPLATE
    tok_cfg["add_bos_token"] = False
    tok_cfg["add_eos_token"] = False
    cfg_path.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------------------------
# Reference tensors
# ----------------------------------------------------------------------------------------------
SENTENCES = [
    "The quick brown fox jumps over the lazy dog again and again.",
    "What is the capital of France? The capital of France is Paris, of course.",
    "Direct preference optimization compares the chosen answer with the rejected one under the policy.",
]
LENGTHS = [5, 9, 12]
PAD_LEN = 12
GREEDY_NEW = 8


def sequences(tokenizer) -> list[list[int]]:
    seqs = []
    for s, n in zip(SENTENCES, LENGTHS):
        ids = encode(tokenizer, s)
        assert len(ids) >= n, (s, len(ids), n)
        seqs.append(ids[:n])
    return seqs


def pad_batch(seqs, side: str):
    ids = torch.full((len(seqs), PAD_LEN), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(seqs), PAD_LEN), dtype=torch.long)
    for b, s in enumerate(seqs):
        n = len(s)
        sl = slice(0, n) if side == "right" else slice(PAD_LEN - n, PAD_LEN)
        ids[b, sl] = torch.tensor(s)
        mask[b, sl] = 1
    return ids, mask


@torch.no_grad()
def reference_tensors(model, seqs) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for i, s in enumerate(seqs):
        ids = torch.tensor([s], dtype=torch.long)
        out[f"ids_single_{i}"] = ids
        out[f"logits_single_{i}"] = model(input_ids=ids).logits.float()

    ids_r, mask_r = pad_batch(seqs, "right")
    logits_r = model(input_ids=ids_r, attention_mask=mask_r).logits.float()
    out.update(ids_right=ids_r, mask_right=mask_r, logits_right=logits_r)

    ids_l, mask_l = pad_batch(seqs, "left")
    pos_l = (mask_l.cumsum(-1) - 1).clamp(min=0)
    logits_l = model(input_ids=ids_l, attention_mask=mask_l, position_ids=pos_l).logits.float()
    out.update(ids_left=ids_l, mask_left=mask_l, logits_left=logits_l)

    lp = torch.log_softmax(logits_r[:, :-1], dim=-1)
    out["logprobs_right"] = lp.gather(-1, ids_r[:, 1:].unsqueeze(-1)).squeeze(-1)

    # Sanity: padded batches agree with the unpadded runs on real positions.
    for b, s in enumerate(seqs):
        n = len(s)
        single = out[f"logits_single_{b}"][0]
        torch.testing.assert_close(logits_r[b, :n], single, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(logits_l[b, PAD_LEN - n:], single, rtol=1e-4, atol=1e-4)

    # Greedy generation with KV cache, no eos stopping.
    prompt = torch.tensor([seqs[1]], dtype=torch.long)
    gen_cfg = GenerationConfig(
        max_new_tokens=GREEDY_NEW, min_new_tokens=0, do_sample=False, num_beams=1,
        eos_token_id=None, bos_token_id=BOS_ID, pad_token_id=PAD_ID, use_cache=True,
    )
    gen = model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=gen_cfg)
    assert gen.shape == (1, prompt.shape[1] + GREEDY_NEW), gen.shape
    # Cross-check against a cache-free greedy loop.
    cur = prompt
    step_logits = []
    for _ in range(GREEDY_NEW):
        last = model(input_ids=cur).logits[:, -1].float()
        step_logits.append(last)
        cur = torch.cat([cur, last.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(cur, gen), (cur, gen)
    top2 = torch.stack(step_logits, dim=1)[0].topk(2, dim=-1).values
    assert (top2[:, 0] - top2[:, 1]).min() > 1e-3, "near-tie in greedy argmax: fixture would be fragile"
    out["greedy_prompt"] = prompt
    out["greedy_out"] = gen
    out["greedy_step_logits"] = torch.stack(step_logits, dim=1)  # (1, 8, V) logits that chose each token
    return {k: v.contiguous() for k, v in out.items()}


# ----------------------------------------------------------------------------------------------
# Tokenizer cases
# ----------------------------------------------------------------------------------------------
TEXT_CASES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    " leading space and trailing space ",
    "multiple   spaces\tand\ttabs",
    "line one\nline two\n\nline four\r\nwindows line",
    "Numbers: 0 7 42 365 2025 3.14159 -12 1,000,000",
    "Café naïve façade jalapeño Zürich Ångström",
    "東京 日本語 Привет мир 🙂🚀 emoji",
    "don't won't it's I'm you're we'll they've",
    "<|im_start|>user\nHi there<|im_end|>\n",
    "text with <|endoftext|> inside",
    "",
    "a",
    "   ",
]

CHAT_CASES = [
    ([{"role": "user", "content": "What is the capital of France?"}], True),
    ([{"role": "user", "content": "What is the capital of France?"}], False),
    ([{"role": "system", "content": "You are a terse assistant."},
      {"role": "user", "content": "What is two plus two?"}], True),
    ([{"role": "system", "content": "You are a terse assistant."},
      {"role": "user", "content": "What is two plus two?"},
      {"role": "assistant", "content": "Four."}], False),
    ([{"role": "user", "content": "Hello!"},
      {"role": "assistant", "content": "Hi, how can I help you today?"},
      {"role": "user", "content": "Tell me a joke about Rust.\nMake it short."}], True),
    ([{"role": "user", "content": "Hello!"},
      {"role": "assistant", "content": "Hi, how can I help you today?"},
      {"role": "user", "content": "Tell me a joke about Rust.\nMake it short."},
      {"role": "assistant", "content": "The borrow checker walked into a bar. It was already borrowed."}], False),
]


def tokenizer_cases(tokenizer) -> dict:
    texts = []
    for t in TEXT_CASES:
        ids = encode(tokenizer, t)
        decoded = tokenizer.decode(ids, skip_special_tokens=False)
        texts.append({"text": t, "ids": ids, "decoded": decoded})
    chats = []
    for messages, agp in CHAT_CASES:
        rendered, ids = chat_ids(tokenizer, messages, agp)
        chats.append({"messages": messages, "add_generation_prompt": agp, "rendered": rendered, "ids": ids})
    return {
        "special_tokens": {"<|endoftext|>": PAD_ID, "<|im_start|>": BOS_ID, "<|im_end|>": EOS_ID},
        "pad_token_id": PAD_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "vocab_size": len(tokenizer),
        "add_special_tokens": False,
        "note": "ids are tokenizer(text, add_special_tokens=False) (this tokenizer adds no BOS/EOS anyway); "
                "special tokens inside text are matched as single added tokens; chat ids = "
                "apply_chat_template(messages, tokenize=True, add_generation_prompt=...)",
        "text_cases": texts,
        "chat_cases": chats,
    }


# ----------------------------------------------------------------------------------------------
MODELS = [
    # folder, kind, seed
    ("tiny-llama", "llama", 1001),
    ("tiny-qwen2", "qwen2", 1002),
    ("tiny-qwen3", "qwen3", 1003),
    ("tiny-mistral", "mistral", 1004),
]


def generate_all(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    vocab = len(tokenizer)
    seqs = sequences(tokenizer)

    built = {}
    for folder, kind, seed in MODELS:
        built[folder] = build_model(kind, vocab, seed)
    ref = build_model("llama", vocab, 1001)
    perturb(ref, seed=2001)
    built["tiny-llama-ref"] = ref

    for folder, model in built.items():
        path = out_dir / folder
        save_model(model, tokenizer, path)
        # Reload what was saved so the reference reflects exactly the committed weights.
        reloaded = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32)
        reloaded.eval()
        tok2 = transformers.AutoTokenizer.from_pretrained(path)
        assert tok2.chat_template == CHAT_TEMPLATE and len(tok2) == vocab
        assert (tok2.pad_token_id, tok2.bos_token_id, tok2.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
        assert encode(tok2, TEXT_CASES[6]) == encode(tokenizer, TEXT_CASES[6])
        tensors = reference_tensors(reloaded, seqs)
        save_file(tensors, str(path / "reference.safetensors"), metadata={
            # one key only: safetensors writes metadata in hash-map order, which varies run to run
            "made_with": f"torch {torch.__version__}, transformers {transformers.__version__}, eager, float32",
        })
        print(f"{folder}: {sum(p.numel() for p in reloaded.parameters())} params; "
              f"greedy_out={tensors['greedy_out'].tolist()}")

    with open(out_dir / "tokenizer_cases.json", "w", encoding="utf-8") as f:
        json.dump(tokenizer_cases(tokenizer), f, ensure_ascii=False, indent=1)
        f.write("\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "fixtures")
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and diff against --out")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate_all(Path(tmp))
            bad = []
            for p in sorted(Path(tmp).rglob("*")):
                if p.is_file():
                    rel = p.relative_to(tmp)
                    other = args.out / rel
                    if not other.exists() or not filecmp.cmp(p, other, shallow=False):
                        bad.append(str(rel))
            if bad:
                print("DIFFERS:", *bad, sep="\n  ")
                sys.exit(1)
            print("fixtures reproduce byte-for-byte")
        return
    generate_all(args.out)


if __name__ == "__main__":
    main()
