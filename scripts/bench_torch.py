#!/usr/bin/env python3
"""PyTorch + transformers side of `rudder bench` (the same two measurements, same shapes).

    .venv/bin/python scripts/bench_torch.py --model .cache/models/smollm2-135m-instruct train --batch 4 --seq 256 --steps 3
    .venv/bin/python scripts/bench_torch.py --model .cache/models/smollm2-135m-instruct generate --batch 8 --new-tokens 64

train: forward + backward + AdamW on random tokens (f32, eager), tokens/s over the measured steps
after one warm-up step, and peak RSS. generate: model.generate with sampling (temperature 1,
top_p 0.95), no EOS stopping, new tokens/s. Prints one JSON line like rudder's bench.
"""
import argparse, json, resource, time

import torch
from transformers import AutoModelForCausalLM


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_train(model, a):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, model.config.vocab_size, (a.batch, a.seq + 1), generator=g)
    times = []
    for step in range(a.steps + 1):
        t0 = time.perf_counter()
        out = model(input_ids=ids[:, :-1], labels=ids[:, :-1])
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        print(f"step {step}: loss {out.loss.item():.4f} {dt:.2f}s", flush=True)
        if step > 0:
            times.append(dt)
    mean = sum(times) / len(times)
    return {"bench": "train", "impl": "pytorch", "batch": a.batch, "seq": a.seq, "steps": a.steps,
            "tokens_per_s": a.batch * a.seq / mean, "step_s": mean, "peak_rss_mib": peak_rss_mib()}


@torch.no_grad()
def bench_generate(model, a):
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, model.config.vocab_size, (a.batch, a.prompt_len), generator=g)
    kw = dict(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=True,
              temperature=1.0, top_p=0.95, pad_token_id=0)
    total_t, total_n = 0.0, 0
    for r in range(a.repeats + 1):
        t0 = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
        dt = time.perf_counter() - t0
        n = (out.shape[1] - ids.shape[1]) * a.batch
        print(f"run {r}: {n} new tokens in {dt:.2f}s", flush=True)
        if r > 0:
            total_t, total_n = total_t + dt, total_n + n
    return {"bench": "generate", "impl": "pytorch", "batch": a.batch, "new_tokens": a.new_tokens,
            "new_tokens_per_s": total_n / total_t, "peak_rss_mib": peak_rss_mib()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--seq", type=int, default=256)
    t.add_argument("--steps", type=int, default=3)
    g = sub.add_parser("generate")
    g.add_argument("--batch", type=int, default=8)
    g.add_argument("--new-tokens", type=int, default=64)
    g.add_argument("--prompt-len", type=int, default=16)
    g.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32, attn_implementation="eager")
    res = bench_train(model.train(), a) if a.cmd == "train" else bench_generate(model.eval(), a)
    res["threads"] = torch.get_num_threads()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
