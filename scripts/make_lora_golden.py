#!/usr/bin/env python
"""PEFT LoRA golden for Rudder's `lm::lora`, and a check that Rudder's adapters load in PEFT.

  .venv/bin/python scripts/make_lora_golden.py
      writes fixtures/tiny-llama-lora/: a PEFT 0.21 adapter on fixtures/tiny-llama (r=4,
      alpha=8, q_proj/v_proj/down_proj, B random so the adapter changes the logits) and
      reference.safetensors {ids (1, 9) int64, logits (1, 9, 384) f32} from PeftModel.

  .venv/bin/python scripts/make_lora_golden.py --check ADAPTER_DIR MERGED_DIR [--base DIR]
      loads base + ADAPTER_DIR (written by `rudder sft --lora-r ...`) with PeftModel, and
      MERGED_DIR (written by `rudder merge`) with transformers, and prints the max |logit diff|.
      Exits 1 when it exceeds 1e-4.
"""
import argparse
import json
import pathlib
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent
BASE = ROOT / "fixtures" / "tiny-llama"
OUT = ROOT / "fixtures" / "tiny-llama-lora"
IDS = torch.tensor([[1, 88, 120, 45, 200, 17, 300, 2, 64]])


def base(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


def make():
    torch.manual_seed(1234)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base(BASE), cfg).eval()
    OUT.mkdir(exist_ok=True)
    model.save_pretrained(OUT)
    # Reload exactly as a user would, so the golden is what PEFT's loader produces.
    model = PeftModel.from_pretrained(base(BASE), OUT).eval()
    with torch.no_grad():
        logits = model(IDS).logits
    save_file({"ids": IDS.contiguous(), "logits": logits.contiguous()}, OUT / "reference.safetensors")
    cfg = json.loads((OUT / "adapter_config.json").read_text())
    # A path relative to the repo root keeps the fixture machine-independent.
    cfg["base_model_name_or_path"] = "fixtures/tiny-llama"
    (OUT / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    print("wrote", OUT, "max |logit| change from base:",
          (logits - base(BASE)(IDS).logits).abs().max().item())


def check(adapter, merged, base_dir):
    peft_model = PeftModel.from_pretrained(base(base_dir), adapter).eval()
    merged_model = base(merged)
    with torch.no_grad():
        a = peft_model(IDS).logits
        b = merged_model(IDS).logits
        plain = base(base_dir)(IDS).logits
    diff = (a - b).abs().max().item()
    print(json.dumps({"adapter": str(adapter), "merged": str(merged), "max_abs_diff_peft_vs_merged": diff,
                      "max_abs_change_from_base": (a - plain).abs().max().item()}))
    sys.exit(0 if diff <= 1e-4 else 1)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--check", nargs=2, metavar=("ADAPTER_DIR", "MERGED_DIR"))
    p.add_argument("--base", default=str(BASE))
    a = p.parse_args()
    if a.check:
        check(a.check[0], a.check[1], a.base)
    else:
        make()
