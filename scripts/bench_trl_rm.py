#!/usr/bin/env python3
"""TRL's RewardTrainer on the same split and settings as the README's `rudder reward train` run.

    .venv/bin/python scripts/bench_trl_rm.py --model .cache/models/smollm2-135m-instruct

Data: .cache/data/rm_{train,eval}.jsonl (LLaMA-Factory pairwise rows from dpo_en_demo.json, first
270 / last 30; `scripts/fetch-data.sh`), turned into TRL's implicit-prompt conversational rows
(chosen = conversation + chosen answer). f32 on the CPU, 2 threads. Prints one JSON line with
eval accuracy before/after, train tokens/s and peak RSS.
"""
import argparse, json, resource, time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

ROOT = Path(__file__).resolve().parent.parent
ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def rows(path):
    out = []
    for line in open(path):
        r = json.loads(line)
        conv = [{"role": ROLES[m["from"]], "content": m["value"]} for m in r["conversations"]]
        if r.get("system"):
            conv = [{"role": "system", "content": r["system"]}] + conv
        out.append({"chosen": conv + [{"role": "assistant", "content": r["chosen"]["value"]}],
                    "rejected": conv + [{"role": "assistant", "content": r["rejected"]["value"]}]})
    return Dataset.from_list(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=10)
    ap.add_argument("--learning-rate", type=float, default=1e-5)
    a = ap.parse_args()
    torch.manual_seed(42)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=1, torch_dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    cfg = RewardConfig(output_dir="/tmp/trl-rm", max_length=a.max_length, per_device_train_batch_size=a.batch_size,
                       per_device_eval_batch_size=4, max_steps=a.max_steps, learning_rate=a.learning_rate,
                       lr_scheduler_type="cosine", logging_steps=1, save_strategy="no", report_to=[],
                       bf16=False, fp16=False, use_cpu=True, seed=42)
    tr = RewardTrainer(model=model, args=cfg, train_dataset=rows(ROOT / ".cache/data/rm_train.jsonl"),
                       eval_dataset=rows(ROOT / ".cache/data/rm_eval.jsonl"), processing_class=tok)
    before = tr.evaluate()
    t0 = time.perf_counter()
    out = tr.train()
    wall = time.perf_counter() - t0
    after = tr.evaluate()
    tokens = out.metrics.get("num_input_tokens_seen") or next(
        (h["num_tokens"] for h in reversed(tr.state.log_history) if "num_tokens" in h), None)
    print(json.dumps({"trainer": "trl RewardTrainer", "eval_before": before, "eval_after": after,
                      "train_wall_s": wall, "tokens": tokens,
                      "tokens_per_s": (float(tokens) / wall) if tokens else None,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
