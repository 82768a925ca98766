#!/usr/bin/env python3
"""Goldens for Rudder's GRPO loss types and REINFORCE++ (issue #23 items 4 and 5).

Run (from the repo root, after scripts/setup-python.sh):

    .venv/bin/python scripts/make_grpo_goldens.py

Produces fixtures/goldens/grpo.json (committed; CI never runs Python), read by ppo/src/loss/tests.rs and
ppo/src/math/tests.rs. Every input is a small fixed tensor written into the JSON next to its outputs.

Where the numbers come from:
  * `losses`: TRL's own `GRPOTrainer._compute_loss` (TRL version in `source`). The trainer is made without its
    __init__ (`object.__new__`), given only the attributes `_compute_loss` reads, and its
    `_get_per_token_logps_and_entropies` is replaced by a stub that returns our fixed per-token log-probs (a leaf
    tensor with requires_grad), so the loss and `d loss / d logp` are exactly TRL's formula on those numbers:
    loss_type grpo / bnpo / dr_grpo / dapo / cispo, importance_sampling_level token / sequence, epsilon and
    epsilon_high, beta (k3 KL term). One process, one accumulation step, steps_per_generation 1, so dapo's
    `num_items_in_batch` is the batch's token count. The clip-ratio metrics TRL logs are recorded too.
  * `advantages`: TRL computes them inside `_generate_and_score_completions` (generation, reward functions and
    accelerate all in one method), so the `scale_rewards` branch (group / batch / none) is transcribed here from
    TRL 1.16's grpo_trainer.py (`multi_objective_aggregation="sum_then_normalize"`) with TRL's own `nanstd`.
    Marked `"implemented_by": "formula"`.
  * `reinforce`: REINFORCE++ as OpenRLHF defines it (openrlhf/trainer/ppo_utils/experience_maker.py,
    `compute_advantages_and_returns`, and openrlhf/models/utils.py, `compute_reward`), transcribed in torch
    (OpenRLHF is not installable here). Per completion: reward_t = -kl_coef * kl_t, plus the score on the last
    token; returns G_t = reward_t + gamma * G_{t+1}; then every token of the batch is normalised together,
    (G - mean) * rsqrt(clamp(var, 1e-8)) with the population variance over tokens. `reinforce_baseline` first
    subtracts each prompt's mean score (its group of n_samples_per_prompt) and forces gamma = 1.
    Marked `"implemented_by": "formula"`.
"""
from __future__ import annotations

import json
import types
from pathlib import Path

import torch
import trl
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import nanstd

torch.set_num_threads(1)
OUT = Path(__file__).resolve().parent.parent / "fixtures" / "goldens" / "grpo.json"

# Four completions of lengths 4, 2, 3, 1 (right-padded to 4), two prompts x two samples.
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.float32)
LOGP = torch.tensor([[-1.0, -0.5, -2.0, -0.3], [-0.2, -3.0, 0.0, 0.0], [-1.5, -0.7, -0.1, 0.0], [-2.2, 0.0, 0.0, 0.0]])
OLD = torch.tensor([[-1.3, -0.5, -1.5, -0.6], [-0.2, -2.5, 0.0, 0.0], [-1.0, -0.9, -2.1, 0.0], [-2.0, 0.0, 0.0, 0.0]])
REF = torch.tensor([[-1.1, -0.4, -2.5, -0.3], [-0.3, -2.0, 0.0, 0.0], [-1.2, -0.8, -0.5, 0.0], [-2.1, 0.0, 0.0, 0.0]])
ADV = torch.tensor([1.0, -0.5, 0.8, -1.2])
MAX_COMPLETION_LENGTH = 6


class _Accelerator:
    num_processes = 1

    def reduce(self, x, reduction="sum"):
        return x

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x


def trl_loss(loss_type: str, level: str, epsilon: float, epsilon_high: float | None, beta: float) -> dict:
    """TRL's `_compute_loss` on the fixed tensors: loss, gradient wrt the per-token log-probs, metrics."""
    t = object.__new__(GRPOTrainer)
    t.args = types.SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1)
    t.loss_type, t.importance_sampling_level, t.beta = loss_type, level, beta
    t.epsilon_low = epsilon
    t.epsilon_high = epsilon_high if epsilon_high is not None else epsilon  # as GRPOTrainer.__init__
    t.top_entropy_quantile, t.off_policy_mask_threshold = 1.0, None
    t.use_vllm, t.aux_loss_enabled, t._entropy_bonus_enabled = False, False, False
    t.max_completion_length = MAX_COMPLETION_LENGTH
    t.current_gradient_accumulation_steps = 1
    t.accelerator = _Accelerator()
    t.model = types.SimpleNamespace(training=True)
    from collections import defaultdict

    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    logp = LOGP.clone().requires_grad_(True)
    t._get_per_token_logps_and_entropies = lambda *a, **k: (logp, torch.zeros_like(LOGP), None)
    b, n = MASK.shape
    inputs = {
        "prompt_ids": torch.zeros(b, 1, dtype=torch.long),
        "prompt_mask": torch.ones(b, 1, dtype=torch.long),
        "completion_ids": torch.zeros(b, n, dtype=torch.long),
        "completion_mask": MASK,
        "advantages": ADV,
        "old_per_token_logps": OLD,
        "ref_per_token_logps": REF,
        "num_items_in_batch": MASK.sum(),
    }
    loss = t._compute_loss(None, inputs)
    loss.backward()
    grad = [[g for g, m in zip(row, mrow) if m > 0] for row, mrow in zip(logp.grad.tolist(), MASK.tolist())]
    metrics = {k: v[-1] for k, v in t._metrics["train"].items() if k != "entropy"}
    return {
        "loss_type": loss_type,
        "importance_sampling_level": level,
        "epsilon": epsilon,
        "epsilon_high": epsilon_high,
        "beta": beta,
        "loss": loss.item(),
        "grad_logp": grad,
        "metrics": metrics,
    }


def rows(x: torch.Tensor) -> list[list[float]]:
    return [[v for v, m in zip(r, mr) if m > 0] for r, mr in zip(x.tolist(), MASK.tolist())]


def scale_rewards(rewards: torch.Tensor, k: int, how: str) -> list[float]:
    """TRL 1.16 `_generate_and_score_completions`, sum_then_normalize branch, transcribed."""
    mean_grouped = rewards.view(-1, k).mean(dim=1).repeat_interleave(k, dim=0)
    if how in ["group", "none"]:
        std = nanstd(rewards.view(-1, k), dim=1).repeat_interleave(k, dim=0)
    else:  # "batch"
        std = nanstd(rewards).expand_as(rewards)
    adv = rewards - mean_grouped
    if how != "none":
        adv = adv / (std + 1e-4)
    return adv.tolist()


def reinforce(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, k: int, kl_coef: float, gamma: float,
              baseline: bool) -> list[list[float]]:
    """OpenRLHF `compute_advantages_and_returns` for advantage_estimator reinforce / reinforce_baseline."""
    if baseline:
        s = scores.reshape(-1, k)
        scores = (s - s.mean(-1, keepdim=True)).reshape(-1)
        gamma = 1.0
    # compute_reward: -kl_coef * kl on every token, the score on the last action token
    eos = mask.size(1) - 1 - mask.long().fliplr().argmax(dim=1, keepdim=True)
    reward = torch.zeros_like(kl).scatter_(1, eos, scores.unsqueeze(1)) + (-kl_coef * kl)
    # get_cumulative_returns
    reward = mask * reward
    returns = torch.zeros_like(reward)
    run = torch.zeros(reward.size(0))
    for t in reversed(range(reward.size(1))):
        run = reward[:, t] + gamma * run
        returns[:, t] = run
    # global normalisation over every action token of the batch
    n = mask.sum()
    mean = (returns * mask).sum() / n
    var = ((returns - mean).pow(2) * mask).sum() / n
    adv = (returns - mean) * var.clamp(min=1e-8).rsqrt()
    return rows(adv)


def main() -> None:
    cases = [
        ("grpo", "token", 0.2, None, 0.0),
        ("grpo", "token", 0.2, 0.28, 0.04),
        ("grpo", "sequence", 0.2, None, 0.0),
        ("grpo", "sequence", 0.1, 0.15, 0.04),
        ("bnpo", "token", 0.2, 0.28, 0.04),
        ("dr_grpo", "token", 0.2, None, 0.04),
        ("dapo", "token", 0.2, 0.28, 0.0),
        ("dapo", "token", 0.2, 0.28, 0.04),
        ("dapo", "sequence", 0.2, 0.28, 0.04),
        ("cispo", "token", 0.2, 5.0, 0.0),
        ("cispo", "token", 0.2, 1.2, 0.04),
    ]
    losses = [trl_loss(*c) for c in cases]
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0, 0.3, 0.9, -0.4, 0.1])
    advantages = {
        "implemented_by": "formula",
        "rewards": rewards.tolist(),
        "k": 4,
        **{how: scale_rewards(rewards, 4, how) for how in ["group", "batch", "none"]},
    }
    scores = torch.tensor([1.0, 0.2, -0.5, 0.7])
    kl = torch.tensor([[0.1, -0.2, 0.05, 0.3], [0.0, 0.4, 0.0, 0.0], [-0.1, 0.2, 0.6, 0.0], [0.25, 0.0, 0.0, 0.0]])
    kl = kl * MASK
    reinf = {
        "implemented_by": "formula",
        "source": "OpenRLHF experience_maker.compute_advantages_and_returns + models/utils.compute_reward",
        "scores": scores.tolist(),
        "kl": rows(kl),
        "k": 2,
        "kl_coef": 0.1,
        "reinforce_gamma_1": reinforce(scores, kl, MASK, 2, 0.1, 1.0, False),
        "reinforce_gamma_0.9": reinforce(scores, kl, MASK, 2, 0.1, 0.9, False),
        "reinforce_baseline": reinforce(scores, kl, MASK, 2, 0.1, 1.0, True),
    }
    out = {
        "source": {"torch": torch.__version__, "trl": trl.__version__,
                   "call": "GRPOTrainer._compute_loss(None, inputs) on object.__new__(GRPOTrainer) with a stub "
                           "_get_per_token_logps_and_entropies returning `logp`"},
        "inputs": {
            "lens": [int(x) for x in MASK.sum(1).tolist()],
            "logp": rows(LOGP), "old_logp": rows(OLD), "ref_logp": rows(REF), "advantages": ADV.tolist(),
            "max_completion_length": MAX_COMPLETION_LENGTH,
        },
        "losses": losses,
        "advantages": advantages,
        "reinforce": reinf,
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
