#!/usr/bin/env bash
# The GPU device check (issue 12): one script, a short table, under 8 minutes on an H200.
#
#   ./gpu-check.sh              from .device/ (scripts/build-cuda.sh packs it) on the GPU machine
#   scripts/gpu-check.sh --dry-run   the same steps on the CPU with tiny sizes (any machine)
#
# Rows: CPU-vs-GPU log-prob agreement on the tiny fixtures (f32 within 1e-4 nats per token;
# bf16 within 0.1: 8 significant bits, ~0.03 seen on the CPU); SFT, DPO and PPO steps on
# tiny-llama on the GPU (finite losses, first step equal to the CPU's); bf16 training throughput and MFU of SmolLM2-135M- and Qwen2-0.5B-shaped random-init
# models; generation tokens/s at batch 32 and 128. Full outputs stay in $WORK (default
# ./gpu-check-out). Environment: RUDDER (binary), CUDA_LIBS (folder with libcublas.so.13 & co.).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
# build-cuda.sh gzips a binary too large for the 64 MiB carry.
if [ -f "$HERE/rudder.gz" ] && [ ! -x "$HERE/rudder" ]; then
    gzip -dc "$HERE/rudder.gz" >"$HERE/rudder" && chmod +x "$HERE/rudder"
fi
if [ -x "$HERE/rudder" ]; then # .device/ layout
    BIN=${RUDDER:-$HERE/rudder}
    FIX=$HERE/fixtures BENCH=$HERE/bench DATA=$HERE/data
else # repository layout (scripts/)
    R=$(dirname "$HERE")
    BIN=${RUDDER:-$R/target/release/rudder}
    [ -x "$BIN" ] || BIN=$R/target/debug/rudder
    FIX=$R/fixtures BENCH=$R/examples/bench DATA=$R/examples/pipeline
fi
PROMPTS=$DATA/prompts.jsonl
[ -f "$PROMPTS" ] || PROMPTS=$(dirname "$DATA")/prompts.jsonl
WORK=${WORK:-$PWD/gpu-check-out}
rm -rf "$WORK" && mkdir -p "$WORK"
export RUDDER_LOG=${RUDDER_LOG:-warn}

# The CUDA 13 libraries: the venv's site-packages/nvidia/cu13/lib (or CUDA_LIBS).
find_cuda_libs() {
    [ -n "${CUDA_LIBS:-}" ] && echo "$CUDA_LIBS" && return
    local d
    for d in $(python3 -c 'import site,sys; print(" ".join(site.getsitepackages()+[site.getusersitepackages()]))' 2>/dev/null) \
        "${VIRTUAL_ENV:-/nonexistent}"/lib/python3*/site-packages /usr/local/lib/python3*/dist-packages \
        /usr/local/lib/python3*/site-packages /opt/*/lib/python3*/site-packages \
        "$HOME"/*/lib/python3*/site-packages "$HOME"/.venv/lib/python3*/site-packages; do
        [ -e "$d/nvidia/cu13/lib/libcublas.so.13" ] && echo "$d/nvidia/cu13/lib" && return
    done
    timeout 30 find / -xdev -maxdepth 9 -path '*/nvidia/cu13/lib/libcublas.so.13' 2>/dev/null |
        head -1 | xargs -r dirname
}
if [ $DRY = 1 ]; then
    GPU=cpu
    TRAIN_MODELS="tiny-llama:$FIX/tiny-llama/config.json tiny-qwen2:$FIX/tiny-qwen2/config.json"
    TB="--batch 2 --seq 32 --steps 1" GN=8 GB="4 8"
else
    GPU=${GPU:-cuda}
    LIBS=$(find_cuda_libs)
    [ -n "$LIBS" ] && export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "CUDA libraries: ${LIBS:-not found (set CUDA_LIBS)}"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    TRAIN_MODELS="smollm2-135m:$BENCH/smollm2-135m.json qwen2-0.5b:$BENCH/qwen2-0.5b.json"
    TB="--batch 8 --seq 1024 --steps 5" GN=128 GB="32 128"
fi
echo "binary: $BIN; GPU side: --device $GPU; outputs: $WORK"

ROWS=()
row() { ROWS+=("$(printf '%-52s %-28s %s' "$1" "$2" "$3")"); }
run() { # name, command...: logs to $WORK/name.log, returns its status
    local name=$1 t0=$SECONDS
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.log"
    local rc=$?
    echo "  $name: exit $rc, $((SECONDS - t0)) s" >&2
    [ $rc = 0 ] || tail -3 "$WORK/$name.log" | sed 's/^/    | /' >&2
    return $rc
}
# Largest |a - b| of a JSON field over two JSONL files, row by row.
field() { grep -o "\"$2\":[^,}]*" "$1" | cut -d: -f2; }
maxdiff() { paste <(field "$1" "$3") <(field "$2" "$3") | awk '
    {d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; n++}
    END {if (n == 0) print "nan"; else printf "%.2e\n", m}'; }
within() { awk -v d="$1" -v b="$2" 'BEGIN {exit !(d != "nan" && d + 0 <= b + 0)}'; }
mib() { field "$1" peak_device_mib | awk '{if ($1 == "null") print "n/a (CPU)"; else printf "%.0f MiB\n", $1}'; }
verdict() { within "$1" "$2" && echo ok || echo FAIL; }

# 1. Log-prob agreement: CPU f32 against the GPU in f32 and bf16.
for m in tiny-llama tiny-qwen2; do
    lp() { run "lp-$m-$1" "$BIN" logprobs --model "$FIX/$m" --data "$DATA/sft.jsonl" \
        --out "$WORK/lp-$m-$1.jsonl" --device "$2" --dtype "$3"; }
    lp ref cpu f32 && lp f32 "$GPU" f32 && lp bf16 "$GPU" bf16 || {
        row "logprobs $m" "run failed" FAIL
        continue
    }
    for dt in f32 bf16; do
        b=1e-4 && [ $dt = bf16 ] && b=1e-1
        d=$(maxdiff "$WORK/lp-$m-ref.jsonl" "$WORK/lp-$m-$dt.jsonl" logprob_mean)
        row "logprob/token $m cpu-f32 vs $GPU-$dt" "max|d| $d (<= $b)" "$(verdict "$d" $b)"
    done
done

# 2. A few training steps on tiny-llama: finite losses; the first step as on the CPU.
REWARD="awk '{print length(\$0) % 7}'"
train() { # stage label device dtype
    local s=$1 name=train-$1-$2
    local common=(--model "$FIX/tiny-llama" --out "$WORK/$name" --max-steps 3 --log-every 1
        --batch-size 4 --quiet --device "$3" --dtype "$4")
    case $s in
    sft) run "$name" "$BIN" sft "${common[@]}" --data "$DATA/sft.jsonl" ;;
    dpo) run "$name" "$BIN" dpo "${common[@]}" --data "$DATA/prefs.jsonl" ;;
    ppo) run "$name" "$BIN" ppo "${common[@]}" --prompts "$PROMPTS" --reward-cmd "$REWARD" \
        --max-new-tokens 8 ;;
    esac
}
for s in sft dpo ppo; do
    train $s ref cpu f32 && train $s f32 "$GPU" f32 && train $s bf16 "$GPU" bf16 || {
        row "$s 3 steps" "run failed" FAIL
        continue
    }
    c=$WORK/train-$s-ref/metrics.jsonl g=$WORK/train-$s-f32/metrics.jsonl
    h=$WORK/train-$s-bf16/metrics.jsonl
    d=$(maxdiff <(head -1 "$c") <(head -1 "$g") loss)
    losses=$(field "$h" loss | tr '\n' ' ')
    fin=$(field "$h" loss | awk '$1 != $1 + 0 || $1 ~ /nan|inf/ {bad = 1} END {print bad ? "FAIL" : "ok"}')
    row "$s step-1 loss cpu vs $GPU (f32)" "|d| $d (<= 1e-3)" "$(verdict "$d" 1e-3)"
    row "$s bf16 losses finite" "${losses:0:26}" "$fin"
done

# 3. bf16 training throughput and MFU (random init, full training, AdamW).
for nm in $TRAIN_MODELS; do
    n=${nm%%:*} cfg=${nm#*:}
    # shellcheck disable=SC2086
    if run "bench-train-$n" "$BIN" bench train --config "$cfg" --random-init --device "$GPU" \
        --dtype bf16 $TB; then
        j=$WORK/bench-train-$n.out
        mfu=$(field "$j" mfu | awk '{if ($1 == "null") print "n/a"; else printf "%.1f%%", 100 * $1}')
        row "train bf16 $n ($TB)" "$(field "$j" tokens_per_s | awk '{printf "%.0f tok/s", $1}')" \
            "MFU $mfu, peak $(mib "$j")"
    else row "train bf16 $n" "run failed" FAIL; fi
done

# 4. Generation tokens/s on the 135M shape (bf16, full-vocabulary sampling as PPO rollouts).
GEN_CFG=$BENCH/smollm2-135m.json GEN_NAME=135m
[ $DRY = 1 ] && GEN_CFG=$FIX/tiny-llama/config.json GEN_NAME=tiny-llama
for b in $GB; do
    if run "bench-gen-$b" "$BIN" bench generate --config "$GEN_CFG" --random-init \
        --device "$GPU" --dtype bf16 --batch "$b" --new-tokens "$GN" --prompt-len 16 --repeats 2 --top-p 1; then
        j=$WORK/bench-gen-$b.out
        row "generate bf16 $GEN_NAME batch $b" "$(field "$j" new_tokens_per_s | awk '{printf "%.0f new tok/s", $1}')" \
            "peak $(mib "$j")"
    else row "generate batch $b" "run failed" FAIL; fi
done

echo
printf '%-52s %-28s %s\n' check result verdict
printf '%s\n' "${ROWS[@]}" | tee "$WORK/table.txt"
! grep -q FAIL "$WORK/table.txt"
