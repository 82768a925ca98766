#!/usr/bin/env python3
"""TRL goldens for Rudder's preference stages (DPO family, SimPO, reward model).

Run (from the repo root, after scripts/setup-python.sh and scripts/make_fixtures.py):

    .venv/bin/python scripts/make_pref_goldens.py [--only dpo|dpo_losses|reward ...]

Produces (all committed; CI never runs Python):
  fixtures/goldens/dpo.json      policy = fixtures/tiny-llama, reference = fixtures/tiny-llama-ref; 4 pairs of
                                 token ids; per-pair log-probs; losses + metrics for sigmoid / ipo / hinge / robust /
                                 cDPO (sigmoid + label smoothing) / RPO (sigmoid + alpha*NLL) / SimPO at several betas.
  fixtures/goldens/dpo_losses.json  the same pairs through the other loss types of TRL's DPOTrainer (exo_pair,
                                 nca_pair, bco_pair, sppo_hard, aot, aot_unpaired, apo_zero, apo_down, discopop, sft,
                                 sigmoid_norm) and weighted combinations (loss_weights; MPO), some with fixed
                                 reference log-probs (TRL's precomputed-reference input) so that aot's sort matters.
  fixtures/tiny-llama-rm/        LlamaForSequenceClassification(num_labels=1) = tiny-llama backbone + seeded score.
  fixtures/goldens/reward.json   rewards (unpadded / right-padded / left-padded) and RewardTrainer losses.

Everything works at the token-id level so the Rust side can feed exactly the same ids.

Where the numbers come from (TRL version recorded in the JSON `source` fields):
  * DPO losses: a real `trl.DPOTrainer` (TRL 1.16) is built per (loss_type, beta, ...) on the tiny models and its
    `DPOTrainer._compute_loss(model, batch, return_outputs=False)` is called on batches made by its own
    `DataCollatorForPreference` from our ids: once per pair (batch of 1 -> per-pair loss) and once on all 4 pairs
    (-> mean loss and the metrics TRL logs in `trainer._metrics[mode]`).
  * TRL 1.16 has no `rpo_alpha` any more: RPO is `loss_type=["sigmoid", "sft"], loss_weights=[1, alpha]` (the
    "sft" term is the batch NLL of the chosen completion tokens, mean per token, as the old rpo_alpha was).
  * TRL 1.16's "sigmoid" no longer applies label_smoothing (cDPO). The conservative-DPO entry is computed with
    the formula of TRL <= 0.2x `DPOTrainer.dpo_loss`:
      -logsigmoid(beta*d)*(1-ls) - logsigmoid(-beta*d)*ls, d = (pi_c - ref_c) - (pi_r - ref_r)  (summed logps)
    and is marked `"implemented_by": "formula"`.
  * SimPO: `trl.experimental.cpo.CPOTrainer(loss_type="simpo", cpo_alpha=0)`; its `cpo_loss(chosen_logps_mean,
    rejected_logps_mean)` is called with the length-normalised policy log-probs (what its `concatenated_forward`
    computes for loss_type simpo: `get_batch_logps(..., average_log_prob=True)`, which we also call and check).
  * Reward model: `trl.RewardTrainer.compute_loss(model, batch)` on batches from its own collator:
      loss = -logsigmoid(r_c - r_r [- margin]).mean() [+ center_rewards_coefficient * mean((r_c + r_r)**2)]
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

import datasets  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForSequenceClassification  # noqa: E402
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer  # noqa: E402
from trl.experimental.cpo import CPOConfig, CPOTrainer  # noqa: E402

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()
datasets.disable_progress_bars()
logging.getLogger("trl").setLevel(logging.ERROR)

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"
GOLD = FIX / "goldens"
POLICY = FIX / "tiny-llama"
REFERENCE = FIX / "tiny-llama-ref"
RM_DIR = FIX / "tiny-llama-rm"

VERSIONS = {
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "trl": trl.__version__,
    "datasets": datasets.__version__,
}

# Prompts are chat-templated user turns (with generation prompt); completions are plain text + eos id.
PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris.", "It is London, I think."),
    ("What is two plus two?", "Four.", "Two plus two is five, of course."),
    ("Tell me about the fox.", "The quick brown fox jumps over the lazy dog.", "No."),
    ("Say hello.", "Hello, world! How are you today?", "Hello there."),
]
BETAS = [0.1, 0.5]
LABEL_SMOOTHING = 0.1
RPO_ALPHA = 0.5
SIMPO_GAMMA = 0.5
SIMPO_BETAS = [0.1, 0.5, 2.0]
RM_SEED = 3001
RM_MARGINS = [0.5, 1.0, 0.0, 2.0]
CENTER_COEF = 0.01


def f(x) -> float:
    return float(x)


def fl(t) -> list[float]:
    return [float(v) for v in t]


def load_causal(path: Path):
    m = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32)
    return m.eval()


def tmp_args(cls, tmpdir: str, **kw):
    return cls(
        # bf16=False matters: TRL configs default to bf16=True, and accelerate then wraps the (already
        # prepared) reference model's forward in bf16 autocast, which changes its log-probs by ~1e-2.
        output_dir=tmpdir, report_to=[], use_cpu=True, bf16=False, fp16=False, seed=0, per_device_train_batch_size=4,
        per_device_eval_batch_size=4, save_strategy="no", logging_strategy="no", disable_tqdm=True, **kw,
    )


# ----------------------------------------------------------------------------------------------
# Pairs and independent log-prob computation
# ----------------------------------------------------------------------------------------------
def build_pairs(tok) -> list[dict]:
    eos = tok.eos_token_id
    pairs = []
    for user, chosen, rejected in PAIRS:
        prompt_ids = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=True,
                                             add_generation_prompt=True)
        if hasattr(prompt_ids, "keys"):
            prompt_ids = prompt_ids["input_ids"]
        prompt_ids = list(prompt_ids)
        c = list(tok(chosen, add_special_tokens=False)["input_ids"]) + [eos]
        r = list(tok(rejected, add_special_tokens=False)["input_ids"]) + [eos]
        assert len(c) != len(r)
        pairs.append({"prompt_text": user, "chosen_text": chosen, "rejected_text": rejected,
                      "prompt_ids": prompt_ids, "chosen_ids": c, "rejected_ids": r})
    return pairs


@torch.no_grad()
def completion_token_logps(model, prompt_ids, completion_ids) -> torch.Tensor:
    ids = torch.tensor([prompt_ids + completion_ids])
    logits = model(input_ids=ids).logits[0].float()
    lp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[0, 1:, None])[:, 0]
    return lp[len(prompt_ids) - 1:]  # log p(completion_j | prompt, completion_<j)


# ----------------------------------------------------------------------------------------------
# DPO via TRL
# ----------------------------------------------------------------------------------------------
def dpo_examples(pairs):
    return [{"prompt_ids": p["prompt_ids"], "chosen_ids": p["chosen_ids"], "rejected_ids": p["rejected_ids"]}
            for p in pairs]


def run_dpo_trainer(tok, pairs, tmpdir, fixed_ref=None, **cfg):
    """Per-pair losses, batch loss, logged metrics and the collated batch of a real DPOTrainer.

    fixed_ref = {"ref_chosen_logps": [...], "ref_rejected_logps": [...]} (one per pair) feeds those
    reference log-probs through TRL's own precomputed-reference path (`precompute_ref_logps`:
    `_compute_loss` reads them from the batch) instead of the reference model's."""
    policy, ref = load_causal(POLICY), load_causal(REFERENCE)
    dummy = Dataset.from_dict({"prompt": ["Hi"], "chosen": [" yes"], "rejected": [" no"]})
    args = tmp_args(DPOConfig, tmpdir, max_length=None, **cfg)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=dummy, processing_class=tok)
    policy.eval()
    ref.eval()
    mode = "train" if trainer.model.training else "eval"
    exs = dpo_examples(pairs)

    def collate(idx):
        batch = trainer.data_collator([exs[i] for i in idx])
        if fixed_ref is not None:
            for k in ("ref_chosen_logps", "ref_rejected_logps"):
                batch[k] = torch.tensor([fixed_ref[k][i] for i in idx], dtype=torch.float32)
        return batch

    if fixed_ref is not None:
        trainer.precompute_ref_logps = True
    per_pair = []
    with torch.no_grad():
        for i in range(len(exs)):
            per_pair.append(f(trainer._compute_loss(trainer.model, collate([i]), return_outputs=False)))
        for v in trainer._metrics.values():
            v.clear()
        batch = collate(range(len(exs)))
        loss = f(trainer._compute_loss(trainer.model, batch, return_outputs=False))
    m = trainer._metrics[mode]
    metrics = {k: f(m[k][-1]) for k in ["rewards/chosen", "rewards/rejected", "rewards/accuracies",
                                         "rewards/margins", "logps/chosen", "logps/rejected"]}
    return per_pair, loss, metrics, batch


def dpo_metrics(beta, pc, pr, rc, rr):
    cr, rj = beta * (pc - rc), beta * (pr - rr)
    return {
        "rewards/chosen": f(cr.mean()), "rewards/rejected": f(rj.mean()),
        "rewards/accuracies": f((cr > rj).float().mean()), "rewards/margins": f((cr - rj).mean()),
        "logps/chosen": f(pc.mean()), "logps/rejected": f(pr.mean()),
    }


def make_dpo(tok) -> dict:
    pairs = build_pairs(tok)
    policy, ref = load_causal(POLICY), load_causal(REFERENCE)
    for p in pairs:
        for who, model in (("policy", policy), ("ref", ref)):
            for side in ("chosen", "rejected"):
                lp = completion_token_logps(model, p["prompt_ids"], p[f"{side}_ids"])
                p[f"{who}_{side}_token_logps"] = fl(lp)
                p[f"{who}_{side}_logps"] = f(lp.sum())
                p[f"{who}_{side}_logps_mean"] = f(lp.mean())
        p["n_chosen"], p["n_rejected"] = len(p["chosen_ids"]), len(p["rejected_ids"])

    T = lambda key: torch.tensor([p[key] for p in pairs], dtype=torch.float64)  # noqa: E731
    pc, pr, rc, rr = T("policy_chosen_logps"), T("policy_rejected_logps"), T("ref_chosen_logps"), T("ref_rejected_logps")
    n_c, n_r = T("n_chosen"), T("n_rejected")

    trl_call = (f"trl {trl.__version__}: DPOTrainer(model=tiny-llama, ref_model=tiny-llama-ref, args=DPOConfig(...)); "
                "batch = trainer.data_collator([{prompt_ids, chosen_ids, rejected_ids}, ...]); "
                "loss = trainer._compute_loss(trainer.model, batch, return_outputs=False); "
                "metrics = trainer._metrics['eval'][key][-1]; per-pair loss = same call on a batch of 1 pair")
    results = []
    collated = None
    with tempfile.TemporaryDirectory() as tmp:
        for beta in BETAS:
            specs = [
                ("sigmoid", dict(loss_type=["sigmoid"]), {}),
                ("ipo", dict(loss_type=["ipo"]), {}),
                ("hinge", dict(loss_type=["hinge"]), {}),
                ("robust", dict(loss_type=["robust"], label_smoothing=LABEL_SMOOTHING),
                 {"label_smoothing": LABEL_SMOOTHING}),
                ("rpo", dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, RPO_ALPHA]), {"rpo_alpha": RPO_ALPHA}),
            ]
            for name, cfg, extra in specs:
                per_pair, loss, metrics, batch = run_dpo_trainer(tok, pairs, tmp, beta=beta, **cfg)
                collated = collated or {k: v.tolist() for k, v in batch.items()}
                ref_metrics = dpo_metrics(beta, pc, pr, rc, rr)
                for k, v in metrics.items():  # TRL's logged metrics agree with our independent log-probs
                    assert math.isclose(v, ref_metrics[k], rel_tol=1e-4, abs_tol=1e-4), (name, k, v, ref_metrics[k])
                entry = {
                    "name": f"{name}_beta{beta}", "loss_type": name, "beta": beta,
                    "label_smoothing": extra.get("label_smoothing", 0.0),
                    "logps": "mean (summed logratio / n tokens)" if name == "ipo" else "sum",
                    **({k: v for k, v in extra.items() if k != "label_smoothing"}),
                    "per_pair_losses": per_pair, "loss": loss, "metrics": metrics,
                    "implemented_by": "trl", "trl_args": {k: v for k, v in cfg.items()},
                }
                # Independent formula check of the TRL numbers.
                d = (pc - rc) - (pr - rr)
                if name == "sigmoid":
                    mine = -F.logsigmoid(beta * d)
                elif name == "hinge":
                    mine = torch.relu(1 - beta * d)
                elif name == "ipo":
                    mine = ((pc - rc) / n_c - (pr - rr) / n_r - 1 / (2 * beta)) ** 2
                elif name == "robust":
                    ls = LABEL_SMOOTHING
                    mine = (-(1 - ls) * F.logsigmoid(beta * d) + ls * F.logsigmoid(-beta * d)) / (1 - 2 * ls)
                else:  # rpo
                    nll_pair = torch.tensor([-sum(p["policy_chosen_token_logps"]) / p["n_chosen"] for p in pairs],
                                            dtype=torch.float64)
                    nll_batch = -sum(sum(p["policy_chosen_token_logps"]) for p in pairs) / float(n_c.sum())
                    mine = -F.logsigmoid(beta * d) + RPO_ALPHA * nll_pair
                    entry["nll_per_pair"] = fl(nll_pair)
                    entry["nll_batch"] = nll_batch
                    entry["note"] = ("TRL 1.16 has no rpo_alpha; RPO = loss_type ['sigmoid','sft'] with loss_weights "
                                     "[1, rpo_alpha]. Batch loss = mean(sigmoid) + rpo_alpha * nll_batch where "
                                     "nll_batch = -(sum of all chosen completion token logps)/(total chosen tokens) "
                                     "(token-weighted, not the mean of per-pair NLLs); per_pair_losses use a batch of 1.")
                    batch_mine = f((-F.logsigmoid(beta * d)).mean() + RPO_ALPHA * nll_batch)
                    assert math.isclose(batch_mine, loss, rel_tol=1e-4, abs_tol=1e-5), (batch_mine, loss)
                for a, b in zip(fl(mine), per_pair):
                    assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5), (name, beta, a, b)
                if name != "rpo":
                    assert math.isclose(f(mine.mean()), loss, rel_tol=1e-4, abs_tol=1e-5), (name, beta)
                results.append(entry)

            # Conservative DPO (cDPO): sigmoid with label smoothing, formula of TRL <= 0.2x dpo_loss.
            ls = LABEL_SMOOTHING
            d = (pc - rc) - (pr - rr)
            cdpo = -F.logsigmoid(beta * d) * (1 - ls) - F.logsigmoid(-beta * d) * ls
            results.append({
                "name": f"sigmoid_ls{ls}_beta{beta}", "loss_type": "sigmoid", "beta": beta, "label_smoothing": ls,
                "logps": "sum", "per_pair_losses": fl(cdpo), "loss": f(cdpo.mean()),
                "metrics": dpo_metrics(beta, pc, pr, rc, rr), "implemented_by": "formula",
                "note": "TRL 1.16 DPOTrainer ignores label_smoothing for 'sigmoid'; formula from TRL <= 0.2x "
                        "DPOTrainer.dpo_loss: -logsigmoid(beta*d)*(1-ls) - logsigmoid(-beta*d)*ls",
            })

        # SimPO through CPOTrainer.cpo_loss
        pcm, prm = T("policy_chosen_logps_mean"), T("policy_rejected_logps_mean")
        for beta in SIMPO_BETAS:
            policy = load_causal(POLICY)
            dummy = Dataset.from_dict({"prompt": ["Hi"], "chosen": [" yes"], "rejected": [" no"]})
            args = tmp_args(CPOConfig, tmp, loss_type="simpo", cpo_alpha=0.0, beta=beta, simpo_gamma=SIMPO_GAMMA,
                            max_length=128)
            trainer = CPOTrainer(model=policy, args=args, train_dataset=dummy, processing_class=tok)
            # Check CPO's own length-normalised log-probs against ours, on a right-padded batch.
            with torch.no_grad():
                seqs = [p["prompt_ids"] + p[s + "_ids"] for s in ("chosen", "rejected") for p in pairs]
                L = max(map(len, seqs))
                ids = torch.tensor([s + [tok.pad_token_id] * (L - len(s)) for s in seqs])
                mask = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs])
                labels = ids.clone()
                for b, (s, p) in enumerate(zip(seqs, pairs + pairs)):
                    labels[b, :len(p["prompt_ids"])] = -100
                labels[mask == 0] = -100
                logits = policy(input_ids=ids, attention_mask=mask).logits.float()
                avg = CPOTrainer.get_batch_logps(logits, labels, average_log_prob=True).double()
                torch.testing.assert_close(avg, torch.cat([pcm, prm]), rtol=1e-5, atol=1e-5)
                losses, cr, rj = trainer.cpo_loss(pcm.float(), prm.float())
            loss = losses.mean()
            results.append({
                "name": f"simpo_beta{beta}", "loss_type": "simpo", "beta": beta, "simpo_gamma": SIMPO_GAMMA,
                "label_smoothing": 0.0, "cpo_alpha": 0.0, "logps": "mean (policy only, no reference)",
                "per_pair_losses": fl(losses), "loss": f(loss),
                "metrics": {
                    "rewards/chosen": f(cr.mean()), "rewards/rejected": f(rj.mean()),
                    "rewards/accuracies": f((cr > rj).float().mean()), "rewards/margins": f((cr - rj).mean()),
                    "logps/chosen": f(pcm.mean()), "logps/rejected": f(prm.mean()),
                },
                "implemented_by": "trl",
                "trl_call": f"trl {trl.__version__}: trl.experimental.cpo.CPOTrainer(args=CPOConfig(loss_type='simpo', "
                            f"cpo_alpha=0, beta={beta}, simpo_gamma={SIMPO_GAMMA})).cpo_loss(policy_chosen_logps_mean, "
                            "policy_rejected_logps_mean); loss = -logsigmoid(beta*(mean_c - mean_r) - gamma); "
                            "rewards = beta * mean logps; metrics logps/* are the mean (length-normalised) logps",
            })
            mine = -F.logsigmoid(beta * (pcm - prm) - SIMPO_GAMMA)
            for a, b in zip(fl(mine), fl(losses)):
                assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)

    return {
        "source": {
            "versions": VERSIONS,
            "dpo_call": trl_call,
            "notes": [
                "logps = sum over completion tokens (incl. the final eos) of log p(token | prompt, previous "
                "completion tokens), model in eval mode, f32, eager attention, no padding; *_logps_mean = logps / n.",
                "d = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)",
                "sigmoid: -logsigmoid(beta*d); hinge: relu(1 - beta*d); robust: (-(1-ls)*logsigmoid(beta*d) + "
                "ls*logsigmoid(-beta*d)) / (1-2ls); ipo (TRL 1.16 length-normalises): ((pc-rc)/n_c - (pr-rr)/n_r "
                "- 1/(2 beta))^2; simpo: -logsigmoid(beta*(mean_c - mean_r) - gamma)",
                "metrics: rewards/chosen = mean(beta*(pc-rc)), rewards/rejected = mean(beta*(pr-rr)), "
                "rewards/accuracies = mean(chosen_reward > rejected_reward), rewards/margins = mean(diff), "
                "logps/chosen = mean(pc), logps/rejected = mean(pr) (summed logps); for simpo rewards use mean logps "
                "and no reference.",
                "TRL collates [chosen_0..chosen_3, rejected_0..rejected_3] right-padded with pad id 0 "
                "(see trl_collated_batch).",
            ],
        },
        "policy": "fixtures/tiny-llama",
        "reference": "fixtures/tiny-llama-ref",
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "prompt_format": "apply_chat_template([{role: user, content: prompt_text}], add_generation_prompt=True); "
                         "completion = tokenize(text, add_special_tokens=False) + [eos_token_id]",
        "pairs": pairs,
        "trl_collated_batch": collated,
        "losses": results,
    }


# ----------------------------------------------------------------------------------------------
# Reward model
# ----------------------------------------------------------------------------------------------
def make_rm(tok):
    rm = LlamaForSequenceClassification.from_pretrained(POLICY, num_labels=1, attn_implementation="eager",
                                                        dtype=torch.float32)
    g = torch.Generator().manual_seed(RM_SEED)
    with torch.no_grad():
        rm.score.weight.copy_(0.2 * torch.randn(rm.score.weight.shape, generator=g))
    assert rm.score.bias is None
    rm.config.pad_token_id = tok.pad_token_id
    rm.config.problem_type = "regression"
    rm.generation_config = None
    RM_DIR.mkdir(parents=True, exist_ok=True)
    rm.save_pretrained(RM_DIR, safe_serialization=True)
    tok.save_pretrained(RM_DIR)
    # Same tokenizer_config tweaks as scripts/make_fixtures.py (reuse the committed file).
    (RM_DIR / "tokenizer_config.json").write_text((POLICY / "tokenizer_config.json").read_text())
    gen = RM_DIR / "generation_config.json"
    if gen.exists():
        gen.unlink()


@torch.no_grad()
def make_reward(tok) -> dict:
    make_rm(tok)
    rm = LlamaForSequenceClassification.from_pretrained(RM_DIR, attn_implementation="eager", dtype=torch.float32)
    rm.eval()
    pad = tok.pad_token_id
    pairs = [{"chosen_ids": p["prompt_ids"] + p["chosen_ids"], "rejected_ids": p["prompt_ids"] + p["rejected_ids"]}
             for p in build_pairs(tok)]
    seqs = [p["chosen_ids"] for p in pairs] + [p["rejected_ids"] for p in pairs]  # TRL order
    L = max(map(len, seqs))

    unpadded = [f(rm(input_ids=torch.tensor([s])).logits[0, 0]) for s in seqs]
    ids_r = torch.tensor([s + [pad] * (L - len(s)) for s in seqs])
    mask_r = (torch.arange(L)[None] < torch.tensor([len(s) for s in seqs])[:, None]).long()
    right = rm(input_ids=ids_r, attention_mask=mask_r).logits[:, 0]
    ids_l = torch.tensor([[pad] * (L - len(s)) + s for s in seqs])
    mask_l = torch.flip(mask_r, dims=[1])
    pos_l = (mask_l.cumsum(-1) - 1).clamp(min=0)
    left = rm(input_ids=ids_l, attention_mask=mask_l, position_ids=pos_l).logits[:, 0]
    for a, b, c in zip(unpadded, fl(right), fl(left)):
        assert math.isclose(a, b, abs_tol=1e-4) and math.isclose(a, c, abs_tol=1e-4), (a, b, c)

    n = len(pairs)
    rc, rr = torch.tensor(unpadded[:n], dtype=torch.float64), torch.tensor(unpadded[n:], dtype=torch.float64)
    for p, c, r in zip(pairs, rc, rr):
        p["reward_chosen"], p["reward_rejected"] = f(c), f(r)
        p["len_chosen"], p["len_rejected"] = len(p["chosen_ids"]), len(p["rejected_ids"])
    for p, m in zip(pairs, RM_MARGINS):
        p["margin"] = m

    variants = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, use_margin, coef in [("plain", False, None), ("margin", True, None),
                                       ("center", False, CENTER_COEF), ("margin_center", True, CENTER_COEF)]:
            model = LlamaForSequenceClassification.from_pretrained(RM_DIR, attn_implementation="eager",
                                                                   dtype=torch.float32).eval()
            cols = {"chosen_ids": [p["chosen_ids"] for p in pairs], "rejected_ids": [p["rejected_ids"] for p in pairs]}
            if use_margin:
                cols["margin"] = [p["margin"] for p in pairs]
            ds = Dataset.from_dict(cols)
            args = tmp_args(RewardConfig, tmp, center_rewards_coefficient=coef, max_length=None)
            trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
            model.eval()
            mode = "train" if trainer.model.training else "eval"
            exs = [ds[i] for i in range(len(ds))]
            per_pair = [f(trainer.compute_loss(trainer.model, trainer.data_collator([e]))) for e in exs]
            for v in trainer._metrics.values():
                v.clear()
            batch = trainer.data_collator(exs)
            loss = f(trainer.compute_loss(trainer.model, batch))
            m = trainer._metrics[mode]
            metrics = {k: f(m[k][-1]) for k in ["accuracy", "margin", "min_reward", "mean_reward", "max_reward"]}
            # Independent check of TRL's formula with the unpadded rewards.
            margins = torch.tensor(RM_MARGINS, dtype=torch.float64) if use_margin else torch.zeros(n, dtype=torch.float64)
            mine = -F.logsigmoid(rc - rr - margins).mean() + ((coef or 0.0) * ((rc + rr) ** 2).mean())
            assert math.isclose(f(mine), loss, rel_tol=1e-4, abs_tol=1e-5), (name, f(mine), loss)
            variants.append({
                "name": name, "use_margin": use_margin, "center_rewards_coefficient": coef,
                "per_pair_losses": per_pair, "loss": loss, "metrics": metrics,
                "trl_batch_input_ids_shape": list(batch["input_ids"].shape),
            })

    return {
        "source": {
            "versions": VERSIONS,
            "call": f"trl {trl.__version__}: RewardTrainer(model=tiny-llama-rm, args=RewardConfig("
                    "center_rewards_coefficient=...), train_dataset=Dataset{chosen_ids, rejected_ids[, margin]}); "
                    "batch = trainer.data_collator(examples); loss = trainer.compute_loss(trainer.model, batch); "
                    "metrics = trainer._metrics['eval'][key][-1]; per-pair loss = same call on a batch of 1 pair",
            "loss_formula": "RewardTrainer.compute_loss (TRL 1.16): rewards_chosen, rewards_rejected = "
                            "chunk(model(**batch).logits.squeeze(-1), 2); loss = -logsigmoid(r_c - r_r [- margin])"
                            ".mean(); if center_rewards_coefficient is not None: loss += coef * mean((r_c + r_r)**2)",
            "last_token_rule": "transformers 5.24 GenericForSequenceClassification.forward: reward = score(h)[b, i*] "
                               "with i* = argmax_i(i * (input_ids[b, i] != pad_token_id)), i.e. the RIGHTMOST token "
                               "that is not the pad id (attention_mask is NOT used). Works for right and left "
                               "padding. pad id = 0 (<|endoftext|>) != eos id 2, and every sequence ends with eos, "
                               "so the reward is read at the final <|im_end|> token.",
            "metrics": "accuracy = mean(r_c > r_r); margin = mean(r_c - r_r); min/mean/max_reward over all 8 rewards",
        },
        "model": "fixtures/tiny-llama-rm",
        "model_notes": f"LlamaForSequenceClassification(num_labels=1), backbone = fixtures/tiny-llama (lm_head "
                       f"dropped), score.weight (1, 64) = 0.2 * randn(generator seed {RM_SEED}), no bias, "
                       f"pad_token_id = {pad}",
        "pad_token_id": pad,
        "pairs": pairs,
        "rewards": {
            "order": "chosen_0..chosen_3, rejected_0..rejected_3 (TRL collator order)",
            "unpadded": unpadded,
            "right_padded": {"input_ids": ids_r.tolist(), "attention_mask": mask_r.tolist(), "rewards": fl(right)},
            "left_padded": {"input_ids": ids_l.tolist(), "attention_mask": mask_l.tolist(),
                            "position_ids": pos_l.tolist(), "rewards": fl(left)},
        },
        "losses": variants,
    }


# ----------------------------------------------------------------------------------------------
# The other loss types of TRL's DPOTrainer, and weighted combinations (fixtures/goldens/dpo_losses.json)
# ----------------------------------------------------------------------------------------------
NEW_LOSSES = ["exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down",
              "discopop", "sft", "sigmoid_norm"]
EXO_EPS = 1e-3  # exo_pair's epsilon is label_smoothing, which TRL requires > 0 for it (the EXO paper's value)
DISCOPOP_TAU = 0.05  # TRL's default
# Reference log-probs fed through TRL's precomputed-reference input: their chosen-minus-rejected log-ratios rank
# the pairs 3, 2, 1, 0 where the policy's rank them 2, 3, 0, 1, so aot's batch sort matches pairs differently.
FIXED_REF = {"ref_chosen_logps": [-95.0, -40.0, -130.0, -148.0], "ref_rejected_logps": [-185.0, -55.0, -30.0, -28.0]}
COMBOS = [
    ("mpo", ["sigmoid", "bco_pair", "sft"], [0.8, 0.2, 1.0]),  # TRL's MPO recipe
    ("apo_zero+sigmoid_norm", ["apo_zero", "sigmoid_norm"], None),  # no weights: 1 each
]


def formula(name, beta, ls, pc, pr, rc, rr, n_c, n_r, nll):
    """Independent per-pair formula of one loss type (sft: the pair's own NLL), float64."""
    cr, rj = pc - rc, pr - rr
    d = cr - rj
    smooth = lambda x: -F.logsigmoid(x) * (1 - ls) - F.logsigmoid(-x) * ls  # noqa: E731
    if name == "sigmoid":
        return -F.logsigmoid(beta * d)
    if name == "exo_pair":
        x = beta * d
        return (torch.sigmoid(x) * (F.logsigmoid(x) - math.log1p(-ls))
                + torch.sigmoid(-x) * (F.logsigmoid(-x) - math.log(ls)))
    if name == "nca_pair":
        return -F.logsigmoid(beta * cr) - 0.5 * F.logsigmoid(-beta * cr) - 0.5 * F.logsigmoid(-beta * rj)
    if name == "bco_pair":
        return -F.logsigmoid(beta * cr) - F.logsigmoid(-beta * rj)
    if name == "sppo_hard":
        return (cr - 0.5 / beta) ** 2 + (rj + 0.5 / beta) ** 2
    if name == "aot":
        return smooth(beta * (torch.sort(pc - pr).values - torch.sort(rc - rr).values))
    if name == "aot_unpaired":
        return smooth(beta * (torch.sort(cr).values - torch.sort(rj).values))
    if name == "apo_zero":
        return 1 - torch.sigmoid(beta * cr) + torch.sigmoid(beta * rj)
    if name == "apo_down":
        return torch.sigmoid(beta * cr) + 1 - torch.sigmoid(beta * d)
    if name == "discopop":
        x = beta * d
        m = torch.sigmoid(x / DISCOPOP_TAU)
        return -F.logsigmoid(x) * (1 - m) + torch.exp(-x) * m
    if name == "sft":
        return nll
    if name == "sigmoid_norm":
        return -F.logsigmoid(beta * (cr / n_c - rj / n_r))
    raise ValueError(name)


def make_dpo_losses(tok) -> dict:
    pairs = build_pairs(tok)
    policy, ref = load_causal(POLICY), load_causal(REFERENCE)
    for p in pairs:
        for who, model in (("policy", policy), ("ref", ref)):
            for side in ("chosen", "rejected"):
                lp = completion_token_logps(model, p["prompt_ids"], p[f"{side}_ids"])
                p[f"{who}_{side}_logps"] = f(lp.sum())
        p["n_chosen"], p["n_rejected"] = len(p["chosen_ids"]), len(p["rejected_ids"])
        for k in ("prompt_text", "chosen_text", "rejected_text"):
            del p[k]
    committed = GOLD / "dpo.json"
    if committed.exists():  # the same pairs and (to float noise) the same log-probs as dpo.json
        for p, q in zip(pairs, json.loads(committed.read_text())["pairs"]):
            assert all(p[k] == q[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")), "pairs differ from dpo.json"
            for k in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps"):
                assert math.isclose(p[k], q[k], abs_tol=1e-4), (k, p[k], q[k])
    T = lambda key: torch.tensor([p[key] for p in pairs], dtype=torch.float64)  # noqa: E731
    pc, pr = T("policy_chosen_logps"), T("policy_rejected_logps")
    n_c, n_r = T("n_chosen"), T("n_rejected")
    nll_pair = -pc / n_c  # sft of a batch of 1: the pair's mean chosen-token NLL
    nll_batch = f(-pc.sum() / n_c.sum())  # sft of the batch: token-weighted

    specs = []  # (name, loss types, weights, beta, label_smoothing, fixed reference)
    for beta in BETAS:
        for name in NEW_LOSSES:
            specs.append((f"{name}_beta{beta}", [name], None, beta, EXO_EPS if name == "exo_pair" else 0.0, None))
        for name, types, weights in COMBOS:
            specs.append((f"{name}_beta{beta}", types, weights, beta, 0.0, None))
    for name in ("aot", "aot_unpaired"):
        for ls in (0.0, LABEL_SMOOTHING):
            specs.append((f"{name}_fixedref_ls{ls}_beta0.1", [name], None, 0.1, ls, FIXED_REF))
    specs.append(("exo_pair_eps0.1_beta0.5", ["exo_pair"], None, 0.5, 0.1, None))

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, types, weights, beta, ls, fixed in specs:
            cfg = dict(loss_type=types, beta=beta, label_smoothing=ls, discopop_tau=DISCOPOP_TAU)
            if weights is not None:
                cfg["loss_weights"] = weights
            per_pair, loss, metrics, _ = run_dpo_trainer(tok, pairs, tmp, fixed_ref=fixed, **cfg)
            rc = torch.tensor(fixed["ref_chosen_logps"], dtype=torch.float64) if fixed else T("ref_chosen_logps")
            rr = torch.tensor(fixed["ref_rejected_logps"], dtype=torch.float64) if fixed else T("ref_rejected_logps")
            ref_metrics = dpo_metrics(beta, pc, pr, rc, rr)
            for k, v in metrics.items():  # TRL's logged metrics agree with our independent log-probs
                assert math.isclose(v, ref_metrics[k], rel_tol=1e-4, abs_tol=1e-4), (name, k, v, ref_metrics[k])
            # Independent formula check of TRL's numbers: per pair (batch of 1: sorting is the identity) and batch.
            ws = weights or [1.0] * len(types)
            one = lambda i: sum(w * f(formula(t, beta, ls, pc[i:i + 1], pr[i:i + 1], rc[i:i + 1], rr[i:i + 1],  # noqa
                                              n_c[i:i + 1], n_r[i:i + 1], nll_pair[i:i + 1]).mean())
                                for t, w in zip(types, ws))
            for i, got in enumerate(per_pair):
                assert math.isclose(one(i), got, rel_tol=1e-4, abs_tol=1e-5), (name, i, one(i), got)
            mine = sum(w * (nll_batch if t == "sft" else f(formula(t, beta, ls, pc, pr, rc, rr, n_c, n_r, None).mean()))
                       for t, w in zip(types, ws))
            assert math.isclose(mine, loss, rel_tol=1e-4, abs_tol=1e-5), (name, mine, loss)
            entry = {
                "name": name, "loss_type": types, "loss_weights": weights, "beta": beta, "label_smoothing": ls,
                "discopop_tau": DISCOPOP_TAU, "per_pair_losses": per_pair, "loss": loss,
                "implemented_by": "trl", "trl_args": cfg,
            }
            if types == ["sft"]:
                # Rudder loads no reference for sft alone; its rewards are then beta * mean logps (as SimPO's).
                entry["trl_metrics"] = metrics
            else:
                entry["metrics"] = metrics
            if fixed:
                entry.update(fixed)
                entry["note"] = "reference log-probs fixed (TRL's precomputed-reference batch input), not the model's"
            results.append(entry)
    return {
        "source": {
            "versions": VERSIONS,
            "dpo_call": f"trl {trl.__version__}: DPOTrainer(model=tiny-llama, ref_model=tiny-llama-ref, "
                        "args=DPOConfig(loss_type=[...], loss_weights=[...], beta, label_smoothing, discopop_tau)); "
                        "batch = trainer.data_collator([{prompt_ids, chosen_ids, rejected_ids}, ...]); "
                        "loss = trainer._compute_loss(trainer.model, batch, return_outputs=False); "
                        "metrics = trainer._metrics['eval'][key][-1]; per-pair loss = same call on a batch of 1 pair. "
                        "Entries with ref_chosen_logps/ref_rejected_logps: trainer.precompute_ref_logps = True and "
                        "those values in the batch.",
            "notes": [
                "pairs: the 4 pairs of dpo.json; logps = summed completion-token log-probs (eval, f32, eager).",
                "r_c = pc - rc, r_r = pr - rr, d = r_c - r_r. TRL 1.16 formulas: exo_pair (eps = label_smoothing) "
                "sig(bd)(logsig(bd) - log(1-eps)) + sig(-bd)(logsig(-bd) - log eps); nca_pair -logsig(b r_c) "
                "- 0.5 logsig(-b r_c) - 0.5 logsig(-b r_r); bco_pair -logsig(b r_c) - logsig(-b r_r) (no running "
                "mean in TRL 1.16); sppo_hard (r_c - 1/(2b))^2 + (r_r + 1/(2b))^2; aot: smoothed logistic of "
                "b (sort(pc - pr) - sort(rc - rr)) over the batch; aot_unpaired: of b (sort(r_c) - sort(r_r)); "
                "apo_zero 1 - sig(b r_c) + sig(b r_r); apo_down sig(b r_c) + 1 - sig(b d); discopop "
                "-logsig(bd)(1 - m) + exp(-bd) m, m = sig(bd / tau); sft: -(sum of the batch's chosen token "
                "logps) / (chosen tokens); sigmoid_norm -logsig(b (r_c/n_c - r_r/n_r)).",
                "loss = sum_k loss_weights[k] * mean_i loss_k(pair i).",
            ],
        },
        "pairs": pairs,
        "losses": results,
    }


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["dpo", "dpo_losses", "reward"], action="append",
                    help="write only these golden files (default: all)")
    only = set(ap.parse_args().only or ["dpo", "dpo_losses", "reward"])
    print("versions:", VERSIONS)
    tok = AutoTokenizer.from_pretrained(POLICY)
    GOLD.mkdir(parents=True, exist_ok=True)
    if "dpo" in only:
        dpo = make_dpo(tok)
        (GOLD / "dpo.json").write_text(json.dumps(dpo, indent=1) + "\n")
        print("dpo:", [(e["name"], round(e["loss"], 6)) for e in dpo["losses"]])
    if "dpo_losses" in only:
        losses = make_dpo_losses(tok)
        (GOLD / "dpo_losses.json").write_text(json.dumps(losses, indent=1) + "\n")
        print("dpo_losses:", [(e["name"], round(e["loss"], 6)) for e in losses["losses"]])
    if "reward" in only:
        reward = make_reward(tok)
        (GOLD / "reward.json").write_text(json.dumps(reward, indent=1) + "\n")
        print("reward:", [(e["name"], round(e["loss"], 6)) for e in reward["losses"]])


if __name__ == "__main__":
    main()
