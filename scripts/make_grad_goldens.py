#!/usr/bin/env python3
"""Reference gradients of the training loss for the tiny fixture models (transformers, f32).

For each fixture folder, a left-padded batch of two token rows goes through
`AutoModelForCausalLM` (eager attention, float32, position ids from the mask as `generate`
makes them); the loss is the mean next-token NLL over the real (non-padding) targets, the SFT
loss. Written to fixtures/goldens/grads.json, per model and parameter (transformers' names):
the loss, the gradient's L2 norm and sum, and the gradient at 32 evenly spaced flat indices.
`lm/tests/gradients.rs` checks Rudder's backward (plain and checkpointed) against these.

Run: .venv/bin/python scripts/make_grad_goldens.py   (the fixtures must exist: make_fixtures.py)
"""
import json
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gpt2", "tiny-mistral"]
ROWS = [[5, 9, 17, 33, 2, 8, 61, 7], [40, 41, 42, 12, 3]]
SAMPLES = 32


def batch(pad_id: int):
    t = max(len(r) for r in ROWS)
    ids = torch.full((len(ROWS), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ROWS), t), dtype=torch.long)
    for i, r in enumerate(ROWS):
        ids[i, t - len(r):] = torch.tensor(r)
        mask[i, t - len(r):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def golden(folder: Path) -> dict:
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    model.eval()  # no dropout (the GPT-2 fixture config has 0.1); autograd works the same
    cfg = json.loads((folder / "config.json").read_text())
    ids, mask, pos = batch(cfg.get("pad_token_id") or 0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
    lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    real = (mask[:, :-1] * mask[:, 1:]).float()  # a target and its context are both real tokens
    loss = -(lp * real).sum() / real.sum()
    loss.backward()
    params = {}
    for name, p in model.named_parameters():
        g = p.grad.detach().double().flatten()
        idx = np.linspace(0, g.numel() - 1, SAMPLES).round().astype(int).tolist()
        params[name] = {
            "shape": list(p.shape),
            "norm": g.norm().item(),
            "sum": g.sum().item(),
            "index": idx,
            "value": [g[i].item() for i in idx],
        }
    return {"loss": loss.item(), "params": params}


def main() -> None:
    out = {
        "made_with": f"torch {torch.__version__}, transformers {transformers.__version__}, eager, float32",
        "rows": ROWS,
        "padding": "left",
        "loss": "mean next-token NLL over targets whose context token is real",
        "models": {m: golden(ROOT / "fixtures" / m) for m in MODELS},
    }
    path = ROOT / "fixtures" / "goldens" / "grads.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
