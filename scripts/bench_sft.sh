#!/usr/bin/env bash
# Real-model SFT benchmark: `rudder sft` vs TRL's SFTTrainer (scripts/bench_trl_sft.py) on the
# first ROWS rows of alpaca_en_demo.json with SmolLM2-135M-Instruct, full fine-tuning and LoRA,
# same config on both sides (no checkpoints on either: TRL save_strategy="no", rudder
# --save-every 0). Peak memory is the process's max RSS (/usr/bin/time -v).
# Usage: scripts/bench_sft.sh [STEPS] [ROWS]   -> .cache/bench/results.jsonl (+ run folders)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
STEPS="${1:-5}"; ROWS="${2:-200}"
BS="${BS:-4}"; GA="${GA:-2}"; LEN="${LEN:-256}"; R=16; ALPHA=32
RUDDER="${RUDDER:-$ROOT/target/release/rudder}"
GGUF="$(scripts/fetch-smollm2.sh | tail -1)"
DATA_DIR="$(scripts/fetch-data.sh | tail -1)"
B="$ROOT/.cache/bench"; mkdir -p "$B"
python3 -c "import json,sys; json.dump(json.load(open(sys.argv[1]))[:int(sys.argv[2])], open(sys.argv[3],'w'))" \
    "$DATA_DIR/alpaca_en_demo.json" "$ROWS" "$B/alpaca.json"
# TRL needs a transformers folder: the same weights, exported from the GGUF by Rudder.
[[ -s "$B/smollm2-hf/model.safetensors" ]] || "$RUDDER" export --model "$GGUF" --out "$B/smollm2-hf"
RES="$B/results.jsonl"; : > "$RES"

rss() { grep "Maximum resident" "$1" | awk '{print $6/1024}'; }

for MODE in full lora; do
    LR=2e-5; EXTRA=()
    [[ $MODE == lora ]] && LR=2e-4 && EXTRA=(--lora-r $R --lora-alpha $ALPHA --lora-targets q_proj,v_proj)
    OUT="$B/rudder-$MODE"; rm -rf "$OUT"
    /usr/bin/time -v -o "$B/rudder-$MODE.time" "$RUDDER" sft --model "$GGUF" --data "$B/alpaca.json" \
        --out "$OUT" --max-steps "$STEPS" --batch-size $BS --grad-accum $GA --learning-rate $LR \
        --warmup-steps 1 --max-seq-len $LEN --log-every 1 --seed 42 --quiet --save-every 0 "${EXTRA[@]}"
    python3 - "$OUT/summary.json" "$(rss "$B/rudder-$MODE.time")" "$MODE" >> "$RES" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({"framework": "rudder", "mode": sys.argv[3], "steps": s["steps"], "losses": s["losses"],
                  "train_runtime_s": s["wall_time_s"], "tokens": s["tokens"],
                  "tokens_per_s": s["tokens_per_s"], "peak_rss_mb": float(sys.argv[2])}))
PY
    .venv/bin/python scripts/bench_trl_sft.py --model "$B/smollm2-hf" --data "$B/alpaca.json" --rows "$ROWS" \
        --mode $MODE --out "$B/trl-$MODE" --steps "$STEPS" --batch-size $BS --grad-accum $GA \
        --learning-rate $LR --max-seq-len $LEN --lora-r $R --lora-alpha $ALPHA 2>"$B/trl-$MODE.log" | tail -1 >> "$RES"
done
cat "$RES"
