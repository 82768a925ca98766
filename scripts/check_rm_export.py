#!/usr/bin/env python3
"""Checks that a reward model folder written by Rudder (`rudder reward train`) loads in transformers
as AutoModelForSequenceClassification and gives Rudder's rewards.

    .venv/bin/python scripts/check_rm_export.py --model OUT [--goldens fixtures/goldens/reward.json]
                                                [--scored scored.jsonl]

--goldens: OUT is a re-save of fixtures/tiny-llama-rm (e.g. `rudder reward train --model
  fixtures/tiny-llama-rm --learning-rate 0 --max-steps 1 ...`): rewards on the goldens' token ids,
  unpadded and as one right- and one left-padded batch, must equal `rewards.unpadded`.
--scored: the output of `rudder reward score --model OUT`; each row is re-tokenized the way Rudder
  builds a sequence (data::prefs::tokenize_pair: templated message prompt + completion tokens + eos,
  or tokenizer(prompt + completion + eos) for text), scored in one padded batch, and compared.
Exits 1 when any reward differs by more than --tol (default 1e-4).
"""
import argparse
import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def batch_rewards(model, rows, pad_id, left):
    t = max(len(r) for r in rows)
    ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), t), dtype=torch.long)
    for i, r in enumerate(rows):
        s = t - len(r) if left else 0
        ids[i, s:s + len(r)] = torch.tensor(r)
        mask[i, s:s + len(r)] = 1
    kw = {"position_ids": (mask.cumsum(-1) - 1).clamp(min=0)} if left else {}
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **kw).logits[:, 0].tolist()


def row_ids(tok, row):
    prompt, completion = row["prompt"], row["completion"]
    eos = tok.eos_token_id
    if isinstance(prompt, list) and isinstance(completion, list):
        return tok(tok.apply_chat_template(prompt + completion, tokenize=False), add_special_tokens=False).input_ids
    if isinstance(prompt, list):
        p = tok(tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False),
                add_special_tokens=False).input_ids
        ids = p + tok(completion, add_special_tokens=False).input_ids
        return ids if ids[-1] == eos else ids + [eos]
    text = prompt + completion
    if not text.endswith(tok.eos_token):
        text += tok.eos_token
    return tok(text).input_ids


def compare(name, got, want, tol):
    diff = max(abs(g - w) for g, w in zip(got, want))
    print(f"{name}: {len(got)} rewards, max |transformers - expected| = {diff:.2e}")
    return diff <= tol


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--goldens")
    ap.add_argument("--scored")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    model = AutoModelForSequenceClassification.from_pretrained(a.model, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(a.model)
    cfg = model.config
    print(f"loaded {type(model).__name__}: num_labels={cfg.num_labels} pad_token_id={cfg.pad_token_id}")
    ok = cfg.num_labels == 1 and cfg.pad_token_id is not None and tok.pad_token_id == cfg.pad_token_id
    if a.goldens:
        g = json.load(open(a.goldens))
        rows = [p["chosen_ids"] for p in g["pairs"]] + [p["rejected_ids"] for p in g["pairs"]]
        want = g["rewards"]["unpadded"]
        single = [batch_rewards(model, [r], cfg.pad_token_id, False)[0] for r in rows]
        ok &= compare("goldens unpadded", single, want, a.tol)
        ok &= compare("goldens right-padded", batch_rewards(model, rows, cfg.pad_token_id, False), want, a.tol)
        ok &= compare("goldens left-padded", batch_rewards(model, rows, cfg.pad_token_id, True), want, a.tol)
    if a.scored:
        scored = [json.loads(line) for line in open(a.scored) if line.strip()]
        rows = [row_ids(tok, r) for r in scored]
        got = batch_rewards(model, rows, cfg.pad_token_id, False)
        ok &= compare("rudder reward score rows", got, [r["reward"] for r in scored], a.tol)
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
