"""Golden numbers for compare/tests/kl_golden.rs: greedy completions of the tiny fixtures and the
per-sample KL estimate sum_t log p_model(y_t) - log p_base(y_t) over the completion tokens
(EOS included), computed with transformers. Run: .venv/bin/python scripts/make_compare_golden.py
"""
import json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer

BASE, MODEL = "fixtures/tiny-llama-ref", "fixtures/tiny-llama"
PROMPTS = [[{"role": "user", "content": "Say hi"}], [{"role": "user", "content": "Fix it."}]]
tok = AutoTokenizer.from_pretrained(MODEL)
base = AutoModelForCausalLM.from_pretrained(BASE).eval()
model = AutoModelForCausalLM.from_pretrained(MODEL).eval()


def seq_logprob(m, prompt_ids, completion):
    ids = torch.tensor([prompt_ids + completion])
    with torch.no_grad():
        lp = torch.log_softmax(m(ids).logits[0, :-1].float(), -1)
    tgt = ids[0, 1:]
    per = lp.gather(-1, tgt[:, None])[:, 0]
    return per[len(prompt_ids) - 1:].sum().item()


out = []
for msgs in PROMPTS:
    p = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    pid = tok(p, add_special_tokens=False)["input_ids"]
    for name, m in [("base", base), ("aligned", model)]:
        g = m.generate(torch.tensor([pid]), max_new_tokens=6, do_sample=False, eos_token_id=2, pad_token_id=0)
        c = g[0, len(pid):].tolist()
        if 2 in c:
            c = c[: c.index(2) + 1]
        lp, lb = seq_logprob(m, pid, c), seq_logprob(base, pid, c)
        out.append({"model": name, "prompt": msgs, "completion_ids": c, "logprob": lp,
                    "logprob_base": lb, "kl": lp - lb})
print(json.dumps(out, indent=1))
