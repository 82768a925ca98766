#!/usr/bin/env bash
# `rudder estimate` against a real short SFT run on SmolLM2-135M-Instruct: the estimate's
# FLOPs, time and energy next to what the run's own cost block measured.
#   scripts/bench_cost.sh [ROWS=40] [BATCH=4] [MAX_SEQ_LEN=256]
# Needs a release build (cargo build --release -p rudder) and the model from quickstart.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-40}; BATCH=${2:-4}; LEN=${3:-256}
R=${RUDDER:-target/release/rudder}
M=${MODEL:-.cache/models/smollm2-135m-instruct}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT   # the run's checkpoint is ~1.6 GB
python3 - "$ROWS" "$WORK/sft.jsonl" <<'PY'
import json, sys
rows = json.load(open(".cache/data/alpaca_en_demo.json"))[: int(sys.argv[1])]
open(sys.argv[2], "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
uptime
"$R" estimate --model "$M" --stage sft --data "$WORK/sft.jsonl" --max-seq-len "$LEN" \
    --epochs 1 --gpu H100 --json > "$WORK/estimate.json"
uptime
"$R" sft --model "$M" --data "$WORK/sft.jsonl" --out "$WORK/run" --batch-size "$BATCH" \
    --epochs 1 --max-seq-len "$LEN" --log-every 5 --save-total-limit 1 --quiet
uptime
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
est = json.load(open(f"{w}/estimate.json"))
here = est["estimates"][0]
run = json.load(open(f"{w}/run/summary.json"))["cost"]
train_s = sum(v for k, v in run["phases_s"].items() if k != "checkpoint")
print(f"{'':<22}{'estimate':>14}{'run':>14}{'run/estimate':>14}")
for name, e, r in [
    ("tokens", est["tokens_per_epoch"], run["tokens"]),
    ("FLOPs", here["flops"], run["flops"]),
    ("time s (no ckpt)", here["seconds"], train_s),
    ("energy kWh", here["energy_kwh"], run["energy_kwh"]),
]:
    print(f"{name:<22}{e:>14.4g}{r:>14.4g}{r / e:>14.3f}")
print("estimate:", here["how"])
print("run:", run["energy"], run["energy_source"], f"wall {run['wall_s']:.1f} s")
PY
