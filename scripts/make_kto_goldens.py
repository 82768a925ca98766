#!/usr/bin/env python3
"""TRL goldens for Rudder's KTO stage (`rudder kto`).

Run (from the repo root, after scripts/setup-python.sh and scripts/make_fixtures.py):

    .venv/bin/python scripts/make_kto_goldens.py

Produces (committed; CI never runs Python):
  fixtures/goldens/kto.json   policy = fixtures/tiny-llama, reference = fixtures/tiny-llama-ref; the 4 pairs of
                              make_pref_goldens.py unpaired as TRL's `unpair_preference_dataset` does (the 4 chosen
                              rows, label true, then the 4 rejected rows, label false); each row's KL completion
                              (TRL's +1 rotation of the completions within a batch); losses and the metrics TRL logs.

Where the numbers come from: a real `trl.KTOTrainer` (TRL 1.16) per (loss_type, beta, weights) on the tiny models;
its own `DataCollatorForUnpairedPreference` collates our ids and `KTOTrainer._compute_loss(model, batch, False)`
gives the loss; the metrics are `trainer._metrics["eval"][key][-1]`. The precomputed-reference entry feeds fixed
`ref_logps` / `ref_KL_logps` through TRL's own precomputed path (`precompute_ref_logps = True`).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

import datasets  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import KTOConfig, KTOTrainer  # noqa: E402

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()
datasets.disable_progress_bars()
logging.getLogger("trl").setLevel(logging.ERROR)

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"
GOLD = FIX / "goldens"
POLICY = FIX / "tiny-llama"
REFERENCE = FIX / "tiny-llama-ref"
VERSIONS = {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}
METRICS = ["kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"]

# (name, row indices of the batch, KTOConfig settings, fixed reference or None)
CASES = [
    ("kto_b0.1", list(range(8)), {"loss_type": "kto", "beta": 0.1}),
    ("kto_b0.5_weights", list(range(8)), {"loss_type": "kto", "beta": 0.5, "desirable_weight": 1.33,
                                          "undesirable_weight": 0.75}),
    ("kto_b0.1_unbalanced", [0, 1, 2, 5], {"loss_type": "kto", "beta": 0.1, "undesirable_weight": 2.0}),
    ("kto_b2.0", [4, 0, 6, 3], {"loss_type": "kto", "beta": 2.0}),
    ("apo_zero_unpaired_b0.1", list(range(8)), {"loss_type": "apo_zero_unpaired", "beta": 0.1}),
    ("kto_b0.1_precomputed", list(range(8)), {"loss_type": "kto", "beta": 0.1, "fixed_ref": True}),
    # Policy and reference swapped: the batch's KL estimate is positive (not clamped to 0).
    ("kto_b0.1_swapped", list(range(8)), {"loss_type": "kto", "beta": 0.1, "swap": True}),
    ("kto_b0.5_swapped_unbalanced", [7, 1, 2, 5, 6], {"loss_type": "kto", "beta": 0.5, "swap": True,
                                                     "desirable_weight": 0.5}),
]


def load_causal(path: Path):
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()


def rows(tok) -> list[dict]:
    """The DPO goldens' pairs (make_pref_goldens.py), unpaired: chosen rows first, then rejected."""
    pairs = json.loads((GOLD / "dpo.json").read_text())["pairs"]
    chosen = [{"prompt_ids": p["prompt_ids"], "completion_ids": p["chosen_ids"], "label": True} for p in pairs]
    rejected = [{"prompt_ids": p["prompt_ids"], "completion_ids": p["rejected_ids"], "label": False} for p in pairs]
    return chosen + rejected


def with_kl(batch_rows: list[dict]) -> list[dict]:
    """TRL's `add_kl_completion_ids` on one batch: completions rotated by +1."""
    comps = [r["completion_ids"] for r in batch_rows]
    kl = [comps[-1]] + comps[:-1]
    return [dict(r, KL_completion_ids=k) for r, k in zip(batch_rows, kl)]


@torch.no_grad()
def sums(model, prompt_ids, completion_ids) -> float:
    ids = torch.tensor([prompt_ids + completion_ids])
    logits = model(input_ids=ids).logits[0].float()
    lp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[0, 1:, None])[:, 0]
    return float(lp[len(prompt_ids) - 1:].sum())


def run_case(tok, all_rows, idx, cfg, tmpdir):
    cfg = dict(cfg)
    fixed = cfg.pop("fixed_ref", False)
    policy, ref = load_causal(POLICY), load_causal(REFERENCE)
    if cfg.pop("swap", False):
        policy, ref = ref, policy
    dummy = Dataset.from_dict({"prompt": ["Hi", "Yo"], "completion": [" yes", " no"], "label": [True, False]})
    args = KTOConfig(output_dir=tmpdir, report_to=[], use_cpu=True, bf16=False, fp16=False, seed=0,
                     per_device_train_batch_size=len(idx), per_device_eval_batch_size=len(idx), save_strategy="no",
                     logging_strategy="no", disable_tqdm=True, max_length=None, **cfg)
    trainer = KTOTrainer(model=policy, ref_model=ref, args=args, train_dataset=dummy, processing_class=tok)
    policy.eval()
    ref.eval()
    exs = with_kl([all_rows[i] for i in idx])
    fixed_ref = None
    if fixed:
        # Arbitrary reference sums, as a precomputed cache would hold them.
        fixed_ref = {"ref_logps": [-100.0 - 3.5 * k for k in range(len(exs))],
                     "ref_KL_logps": [-110.0 + 2.25 * k for k in range(len(exs))]}
        for k, e in enumerate(exs):
            e["ref_logps"], e["ref_KL_logps"] = fixed_ref["ref_logps"][k], fixed_ref["ref_KL_logps"][k]
        trainer.precompute_ref_logps = True
    batch = trainer.data_collator(exs)
    for v in trainer._metrics.values():
        v.clear()
    with torch.no_grad():
        loss = float(trainer._compute_loss(trainer.model, batch, return_outputs=False))
    m = trainer._metrics["eval"]
    metrics = {k: float(m[k][-1]) for k in METRICS if m.get(k)}
    return loss, metrics, exs, fixed_ref


def main() -> None:
    print("versions:", VERSIONS)
    tok = AutoTokenizer.from_pretrained(POLICY)
    all_rows = rows(tok)
    policy, ref = load_causal(POLICY), load_causal(REFERENCE)
    out_rows = []
    for r in all_rows:
        out_rows.append(dict(r, policy_logps=sums(policy, r["prompt_ids"], r["completion_ids"]),
                             ref_logps=sums(ref, r["prompt_ids"], r["completion_ids"])))
    cases = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for name, idx, cfg in CASES:
            loss, metrics, exs, fixed_ref = run_case(tok, all_rows, idx, cfg, tmpdir)
            entry = {"name": name, "rows": idx, **{k: v for k, v in cfg.items() if k != "fixed_ref"},
                     "kl_completion_ids": [e["KL_completion_ids"] for e in exs],
                     "loss": loss, "metrics": metrics}
            if fixed_ref is not None:
                entry["fixed_ref"] = fixed_ref
            cases.append(entry)
            print(name, round(loss, 6), {k: round(v, 5) for k, v in metrics.items()})
    gold = {
        "source": f"trl {trl.__version__} KTOTrainer._compute_loss on DataCollatorForUnpairedPreference batches",
        "versions": VERSIONS,
        "policy": "fixtures/tiny-llama",
        "reference": "fixtures/tiny-llama-ref",
        "pad_token_id": tok.pad_token_id,
        "rows": out_rows,
        "cases": cases,
    }
    (GOLD / "kto.json").write_text(json.dumps(gold, indent=1) + "\n")


if __name__ == "__main__":
    main()
