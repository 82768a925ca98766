#!/usr/bin/env python
"""TRL's SFTTrainer on the same rows and config as `scripts/bench_sft.sh` gives `rudder sft`.

  .venv/bin/python scripts/bench_trl_sft.py --model DIR --data alpaca_en_demo.json --rows 200 \
      --mode full|lora --out runs/trl-full [--steps 10 --batch-size 4 --grad-accum 2 ...]

Alpaca rows become conversational prompt/completion rows (user = instruction + "\\n" + input,
as LLaMA-Factory and Rudder do), so TRL trains on the completion tokens only, like Rudder.
Prints one JSON line: losses per step, train_runtime, non-padding input tokens, tokens/s, and
the process's peak RSS (ru_maxrss, which includes Python and torch themselves).
"""
import argparse
import json
import resource
import time

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer


def rows(path, n):
    out = []
    for r in json.load(open(path))[:n]:
        user = r["instruction"] + ("\n" + r["input"] if r.get("input") else "")
        out.append({"prompt": [{"role": "user", "content": user}],
                    "completion": [{"role": "assistant", "content": r["output"]}]})
    return Dataset.from_list(out)


class Losses(TrainerCallback):
    def __init__(self):
        self.losses, self.tokens = [], 0

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])
        if logs and "num_input_tokens_seen" in logs:
            self.tokens = logs["num_input_tokens_seen"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--mode", choices=["full", "lora"], default="full")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--max-seq-len", type=int, default=512)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    lr = a.learning_rate or (2e-5 if a.mode == "full" else 2e-4)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="eager")
    cfg = SFTConfig(
        output_dir=a.out, max_steps=a.steps, per_device_train_batch_size=a.batch_size,
        gradient_accumulation_steps=a.grad_accum, learning_rate=lr, lr_scheduler_type="cosine",
        warmup_steps=1, weight_decay=0.0, max_grad_norm=1.0, max_length=a.max_seq_len, packing=False,
        logging_steps=1, save_strategy="no", report_to=[], seed=42, use_cpu=True, bf16=False,
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=0)
    peft_cfg = None
    if a.mode == "lora":
        peft_cfg = LoraConfig(r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=0.0,
                              target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    cb = Losses()
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=rows(a.data, a.rows), processing_class=tok,
                         peft_config=peft_cfg, callbacks=[cb])
    t0 = time.time()
    out = trainer.train()
    wall = time.time() - t0
    runtime = out.metrics.get("train_runtime", wall)
    print(json.dumps({
        "framework": "trl", "mode": a.mode, "steps": a.steps, "losses": cb.losses,
        "train_runtime_s": runtime, "tokens": cb.tokens, "tokens_per_s": cb.tokens / runtime,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
