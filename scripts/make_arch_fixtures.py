#!/usr/bin/env python3
"""Reference fixtures for GPT-2 and the Mixture-of-Experts decoders (transformers 5.24, f32).

Run (from the repo root, after scripts/setup-python.sh):

    .venv/bin/python scripts/make_arch_fixtures.py            # (re)writes the folders below
    .venv/bin/python scripts/make_arch_fixtures.py --check    # rebuild in a temp dir, compare

Produces (all committed; CI never runs Python), each with the tokenizer of make_fixtures.py and a
reference.safetensors with the same keys as the dense fixtures (see fixtures/README.md):
  fixtures/tiny-gpt2/         GPT2LMHeadModel: learned positions, LayerNorm, gelu_new, Conv1D, tied head
  fixtures/tiny-mixtral/      MixtralForCausalLM: 4 experts, top-2 (always renormalised)
  fixtures/tiny-qwen2-moe/    Qwen2MoeForCausalLM: 4 experts top-2, norm_topk_prob false, shared expert
                              with sigmoid gate, layer 1 dense (mlp_only_layers [1])
  fixtures/tiny-qwen3-moe/    Qwen3MoeForCausalLM: 4 experts top-2, norm_topk_prob true, q/k norm
MoE folders add `aux_loss_right` (scalar): `model(ids_right, attention_mask=mask_right,
output_router_logits=True).aux_loss`, i.e. transformers' `load_balancing_loss_func` over all
layers' router logits with the padding mask, and `aux_loss_single_2` (no mask).
"""
from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (seeds torch determinism settings on import)
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    GPT2Config,
    MixtralConfig,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
)

ROOT = mf.ROOT
IDS = dict(pad_token_id=mf.PAD_ID, bos_token_id=mf.BOS_ID, eos_token_id=mf.EOS_ID)
DENSE = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=128, rms_norm_eps=1e-5, hidden_act="silu", **IDS,
)


def make_config(kind: str, vocab: int):
    if kind == "gpt2":
        return GPT2Config(
            vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=128, n_inner=None,
            activation_function="gelu_new", layer_norm_epsilon=1e-5, tie_word_embeddings=True, **IDS,
        )
    if kind == "mixtral":
        return MixtralConfig(
            vocab_size=vocab, head_dim=16, intermediate_size=96, num_local_experts=4,
            num_experts_per_tok=2, router_aux_loss_coef=0.02, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, sliding_window=None, **DENSE,
        )
    if kind == "qwen2_moe":
        return Qwen2MoeConfig(
            vocab_size=vocab, intermediate_size=160, moe_intermediate_size=48,
            shared_expert_intermediate_size=96, num_experts=4, num_experts_per_tok=2,
            norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1], router_aux_loss_coef=0.02,
            tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
            use_sliding_window=False, **DENSE,
        )
    if kind == "qwen3_moe":
        return Qwen3MoeConfig(
            vocab_size=vocab, head_dim=32, intermediate_size=160, moe_intermediate_size=48, num_experts=4,
            num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
            router_aux_loss_coef=0.02, tie_word_embeddings=False, attention_bias=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}, use_sliding_window=False,
            **DENSE,
        )
    raise ValueError(kind)


@torch.no_grad()
def randomize(model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if name.endswith("norm.weight") or ".ln_" in name:
            if name.endswith(".bias"):
                p.copy_(0.1 * noise)  # LayerNorm bias
            else:
                p.copy_(1.0 + 0.2 * noise)
        elif name.endswith(".bias"):
            p.copy_(0.1 * noise)
        elif "embed_tokens" in name or "wte" in name:
            p.copy_(0.3 * noise)
        elif "wpe" in name:
            p.copy_(0.1 * noise)
        elif name.endswith("gate.weight") and "shared_expert_gate" not in name:
            p.copy_(0.5 * noise)  # routers: well separated expert probabilities
        else:
            p.copy_(0.15 * noise)


def build_model(kind: str, vocab: int, seed: int):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(kind, vocab), attn_implementation="eager",
                                             dtype=torch.float32)
    randomize(model, seed)
    return model


@torch.no_grad()
def routing_margin(model, ids, mask) -> float:
    """Smallest gap between the k-th and (k+1)-th router probability over real tokens: top-k
    selection must not hinge on f32 round-off, or the fixture would be fragile."""
    logits = model(input_ids=ids, attention_mask=mask, output_router_logits=True).router_logits
    k = model.config.num_experts_per_tok
    real = mask.reshape(-1).bool()
    gaps = []
    for layer in logits:
        p = torch.softmax(layer.float(), dim=-1)[real].sort(dim=-1, descending=True).values
        gaps.append((p[:, k - 1] - p[:, k]).min())
    return float(min(gaps))


MIN_MARGIN = 1e-4  # f32 round-off between implementations is ~1e-6


def margin_of(model, seqs) -> float:
    ids_r, mask_r = mf.pad_batch(seqs, "right")
    ids_l, mask_l = mf.pad_batch(seqs, "left")
    return min(routing_margin(model, ids_r, mask_r), routing_margin(model, ids_l, mask_l))


@torch.no_grad()
def moe_extras(model, ref) -> dict[str, torch.Tensor]:
    out = model(input_ids=ref["ids_right"], attention_mask=ref["mask_right"], output_router_logits=True)
    single = model(input_ids=ref["ids_single_2"], output_router_logits=True)
    return {
        "aux_loss_right": out.aux_loss.reshape(()).float().contiguous(),
        "aux_loss_single_2": single.aux_loss.reshape(()).float().contiguous(),
    }


MODELS = [("tiny-gpt2", "gpt2", 1101), ("tiny-mixtral", "mixtral", 1102),
          ("tiny-qwen2-moe", "qwen2_moe", 1103), ("tiny-qwen3-moe", "qwen3_moe", 1104)]


def generate_all(out_dir: Path) -> None:
    tokenizer = mf.build_tokenizer()
    vocab = len(tokenizer)
    seqs = mf.sequences(tokenizer)
    for folder, kind, seed in MODELS:
        path = out_dir / folder
        model = build_model(kind, vocab, seed)
        # The first seed (in steps of 100) whose routing has no near-tie on the reference inputs.
        while kind != "gpt2" and margin_of(model.eval(), seqs) < MIN_MARGIN:
            seed += 100
            model = build_model(kind, vocab, seed)
        mf.save_model(model, tokenizer, path)
        reloaded = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32)
        reloaded.eval()
        tensors = mf.reference_tensors(reloaded, seqs)
        if kind != "gpt2":
            tensors.update(moe_extras(reloaded, tensors))
        save_file(tensors, str(path / "reference.safetensors"), metadata={
            "made_with": f"torch {torch.__version__}, transformers {transformers.__version__}, eager, float32",
        })
        if kind != "gpt2":
            assert margin_of(reloaded, seqs) >= MIN_MARGIN
        extra = f" seed {seed}, aux_loss_right={float(tensors['aux_loss_right']):.6f}" if kind != "gpt2" else ""
        print(f"{folder}: {sum(p.numel() for p in reloaded.parameters())} params;{extra} "
              f"greedy_out={tensors['greedy_out'].tolist()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "fixtures")
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and diff against --out")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    if not args.check:
        generate_all(args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate_all(Path(tmp))
        bad = [str(p.relative_to(tmp)) for p in sorted(Path(tmp).rglob("*"))
               if p.is_file() and not filecmp.cmp(p, args.out / p.relative_to(tmp), shallow=False)]
        if bad:
            sys.exit(f"differs from {args.out}: {bad}")
        print("fixtures match")


if __name__ == "__main__":
    main()
