#!/usr/bin/env python3
"""Checks that folders written by `rudder export` load unchanged in transformers and give the
reference logits. Run after building rudder:

    .venv/bin/python scripts/check_export.py target/release/rudder

For each tiny fixture: export it with rudder, load the result with AutoModelForCausalLM and
AutoTokenizer, compare logits with the fixture's reference.safetensors and the tokenizer's ids
and chat template with the original. For SmolLM2 (if .cache/models/smollm2-135m-instruct.gguf is
there): export the GGUF and compare the last-position top-5 logits with the GGUF goldens.
"""
import json, subprocess, sys, tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent


def export(rudder, src, dst):
    subprocess.run([rudder, "export", "--model", str(src), "--out", str(dst)], check=True, capture_output=True)


def check_fixture(rudder, name, tmp):
    dst = tmp / name
    export(rudder, ROOT / "fixtures" / name, dst)
    model = AutoModelForCausalLM.from_pretrained(dst, torch_dtype=torch.float32, attn_implementation="eager").eval()
    ref = load_file(ROOT / "fixtures" / name / "reference.safetensors")
    with torch.no_grad():
        got = model(ref["ids_single_2"]).logits
    diff = (got - ref["logits_single_2"]).abs().max().item()
    tok, orig = AutoTokenizer.from_pretrained(dst), AutoTokenizer.from_pretrained(ROOT / "fixtures" / name)
    msgs = [{"role": "user", "content": "Hi there"}]
    same_tok = tok("Hello, world! 123")["input_ids"] == orig("Hello, world! 123")["input_ids"]
    same_chat = tok.apply_chat_template(msgs, tokenize=False) == orig.apply_chat_template(msgs, tokenize=False)
    return {"model": name, "max_logit_diff": diff, "tokenizer_same": same_tok, "chat_template_same": same_chat}


def check_smollm2(rudder, tmp):
    gguf = ROOT / ".cache/models/smollm2-135m-instruct.gguf"
    if not gguf.exists():
        return None
    dst = tmp / "smollm2"
    export(rudder, gguf, dst)
    golden = json.loads((ROOT / "fixtures/gguf/smollm2_goldens.json").read_text())["logits"]
    model = AutoModelForCausalLM.from_pretrained(dst, torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(dst)
    ids = tok(golden["prompt"], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        last = model(torch.tensor([ids])).logits[0, -1]
    top = last.topk(5)
    return {"model": "smollm2-135m-instruct (from GGUF)", "ids_same": ids == golden["ids"],
            "top5_same": top.indices.tolist() == golden["top5_ids"],
            "max_top5_diff": max(abs(a - b) for a, b in zip(top.values.tolist(), golden["top5_values"]))}


def main():
    rudder = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/rudder")
    ok = True
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        for name in ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mistral",
                     "tiny-gpt2", "tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe"]:
            r = check_fixture(rudder, name, t)
            ok &= r["max_logit_diff"] < 1e-4 and r["tokenizer_same"] and r["chat_template_same"]
            print(json.dumps(r))
        r = check_smollm2(rudder, t)
        if r:
            ok &= r["ids_same"] and r["top5_same"] and r["max_top5_diff"] < 1e-3
            print(json.dumps(r))
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
