#!/usr/bin/env python3
"""transformers' `generate` on the batch a PPO rollout samples, for the README's PPO table.

    .venv/bin/python scripts/bench_hf_generate.py --model .cache/models/smollm2-135m-instruct \
        --prompts .cache/data/ppo_prompts.jsonl --batch 8 --new-tokens 64 --temperature 0.7

The first `--batch` prompts go through the chat template, left-padded, sampled with
temperature only (top-k 0, top-p 1, like `rudder ppo`'s defaults), stopping rows at EOS as
generation in a PPO rollout does. Prints one JSON line: new tokens (up to each row's EOS) per
second over `--repeats` runs after one warm-up, and peak RSS.
"""
import argparse, json, resource, time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(a.model, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32).eval()
    rows = [json.loads(l) for l in open(a.prompts) if l.strip()][: a.batch]
    texts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
             if isinstance(r["prompt"], list) else r["prompt"] for r in rows]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    kw = dict(max_new_tokens=a.new_tokens, do_sample=True, temperature=a.temperature, top_k=0,
              top_p=1.0, pad_token_id=tok.pad_token_id or tok.eos_token_id)
    total_t, total_n = 0.0, 0
    with torch.no_grad():
        for r in range(a.repeats + 1):
            t0 = time.perf_counter()
            out = model.generate(**enc, **kw)
            dt = time.perf_counter() - t0
            new = out[:, enc["input_ids"].shape[1]:]
            g = model.generation_config.eos_token_id
            eos = {tok.eos_token_id, *(g if isinstance(g, list) else [g])}
            n = 0
            for row in new.tolist():
                for t in row:
                    n += 1
                    if t in eos:
                        break
            if r > 0:
                total_t += dt
                total_n += n
    print(json.dumps({"impl": "transformers", "batch": a.batch, "new_tokens": a.new_tokens,
                      "temperature": a.temperature, "new_tokens_per_s": total_n / total_t,
                      "threads": torch.get_num_threads(),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
