#!/usr/bin/env python3
"""TRL 1.16 DPOTrainer side by side with `rudder dpo` on the same split and config.

    scripts/fetch-data.sh && scripts/fetch-smollm2.sh
    .venv/bin/python scripts/bench_trl_dpo.py --split          # .cache/data/dpo/{train,eval}.json
    .venv/bin/python scripts/bench_trl_dpo.py --model DIR ...  # the TRL run; prints one JSON line

The split is dpo_en_demo.json rows [0, 270) for training and [270, 300) for evaluation (the file
order, no shuffle, so both trainers see identical pairs). LLaMA-Factory's sharegpt rows become
TRL's explicit-prompt conversational rows exactly as `data::prefs` reads them (human/gpt/system
-> user/assistant/system). `--model` must be a transformers folder (e.g. `rudder export` of the
SmolLM2 GGUF). Reports eval rewards/accuracies and rewards/margins before and after, tokens/s of
the training loop (attention-mask tokens of the 2B concatenated rows, as rudder counts) and the
peak resident memory of the process.
"""
import argparse
import json
import pathlib
import resource
import time

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
ROOT = pathlib.Path(__file__).resolve().parent.parent


def to_trl(row):
    msg = lambda m: {"role": ROLES[m["from"]], "content": m["value"]}
    return {
        "prompt": [msg(m) for m in row["conversations"]],
        "chosen": [msg(row["chosen"])],
        "rejected": [msg(row["rejected"])],
    }


def split(src, dest):
    rows = json.loads(pathlib.Path(src).read_text())
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "train.json").write_text(json.dumps(rows[:270]))
    (dest / "eval.json").write_text(json.dumps(rows[270:]))
    print(dest)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", action="store_true")
    ap.add_argument("--data-dir", default=str(ROOT / ".cache/data/dpo"))
    ap.add_argument("--model")
    ap.add_argument("--out", default="/tmp/trl-dpo")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=6)
    ap.add_argument("--learning-rate", type=float, default=1e-6)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--precompute-ref", action="store_true")
    args = ap.parse_args()
    data_dir = pathlib.Path(args.data_dir)
    if args.split:
        return split(ROOT / ".cache/data/dpo_en_demo.json", data_dir)

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(42)
    load = lambda f: Dataset.from_list([to_trl(r) for r in json.loads((data_dir / f).read_text())])
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    cfg = DPOConfig(
        output_dir=args.out, report_to=[], use_cpu=True, bf16=False, beta=args.beta,
        learning_rate=args.learning_rate, lr_scheduler_type="cosine", warmup_steps=0,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        max_steps=args.max_steps, max_length=args.max_length, truncation_mode="keep_end",
        max_grad_norm=1.0, weight_decay=0.0, logging_steps=1, save_strategy="no",
        precompute_ref_log_probs=args.precompute_ref, seed=42, dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = DPOTrainer(model=model, args=cfg, train_dataset=load("train.json"),
                         eval_dataset=load("eval.json"), processing_class=tok)
    before = trainer.evaluate()
    t0 = time.time()
    out = trainer.train()
    wall = time.time() - t0
    after = trainer.evaluate()
    tokens = trainer.state.num_input_tokens_seen or None
    pick = lambda m: {k: m.get(f"eval_{k}") for k in ("rewards/accuracies", "rewards/margins", "loss")}
    print(json.dumps({
        "trainer": "trl 1.16 DPOTrainer",
        "eval_before": pick(before), "eval_after": pick(after),
        "train_loss": out.training_loss, "train_wall_s": wall,
        "train_samples_per_s": out.metrics.get("train_samples_per_second"),
        "tokens_seen": tokens, "tokens_per_s": tokens / wall if tokens else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
