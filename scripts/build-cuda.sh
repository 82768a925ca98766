#!/usr/bin/env bash
# Builds `rudder --features cuda` on a machine with no GPU and no CUDA install, then packs what
# scripts/gpu-check.sh needs into .device/ (binary, random-init configs, tiny fixtures; < 64 MiB).
#
#   scripts/build-cuda.sh [all|build|pack]   # cold: about 6 min on 2 idle cores; keeps target-cuda/
#   CARGO_BUILD_JOBS=1 nice -n 19 scripts/build-cuda.sh   # on a shared machine
#
# nvcc comes from PyPI wheels (pinned 13.0.x: newer PTX is rejected by driver 580), unpacked into
# .cuda/ (git-ignored). cudarc links the CUDA libraries dynamically, so the linker needs them:
# .cuda/.../lib/stubs holds link-only stubs exporting every symbol cudarc declares. At run time
# the binary needs the real libcuda.so.1 (driver), libcublas(Lt).so.13, libcurand.so.10,
# libnvrtc.so.13 and libcudart.so.13: it looks in $ORIGIN/lib (rpath), then LD_LIBRARY_PATH
# (gpu-check.sh points it at the venv's site-packages/nvidia/cu13/lib).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
CUDA_DIR=$ROOT/.cuda
export CUDA_ROOT=$CUDA_DIR/nvidia/cu13
WHEELS="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85"

fetch_nvcc() {
    [ -x "$CUDA_ROOT/bin/nvcc" ] && return
    mkdir -p "$CUDA_DIR/wheels"
    # shellcheck disable=SC2086
    "$PY" -m pip download -q --no-deps -d "$CUDA_DIR/wheels" $WHEELS
    for w in "$CUDA_DIR"/wheels/*.whl; do "$PY" -m zipfile -e "$w" "$CUDA_DIR"; done
    chmod +x "$CUDA_ROOT"/bin/* "$CUDA_ROOT"/nvvm/bin/*
}

# One C file per library: `void sym(void) {}` for each function cudarc's bindings declare
# (a superset over CUDA versions is harmless). Linked with the real SONAME, so the binary's
# NEEDED entries name the real libraries; the stubs never run.
make_stubs() {
    local src stubs
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src | sort | tail -1)
    stubs=$CUDA_ROOT/lib/stubs
    mkdir -p "$stubs"
    while read -r module link soname; do
        [ -f "$stubs/$link" ] && continue
        grep -A1 'extern "C" {' "$src/$module/sys/mod.rs" | grep -oP '^\s+(pub )?fn \K\w+' |
            sort -u | sed 's/.*/void &(void) {}/' >"$stubs/$module.c"
        gcc -shared -fPIC -o "$stubs/$link" -Wl,-soname,"$soname" "$stubs/$module.c"
    done <<EOF
driver libcuda.so libcuda.so.1
cublas libcublas.so libcublas.so.13
cublaslt libcublasLt.so libcublasLt.so.13
curand libcurand.so libcurand.so.10
nvrtc libnvrtc.so libnvrtc.so.13
EOF
    ln -sf libcudart.so.13 "$CUDA_ROOT/lib/libcudart.so"
}

build() {
fetch_nvcc
make_stubs
export PATH=$CUDA_ROOT/bin:$CUDA_ROOT/nvvm/bin:$PATH
export LIBRARY_PATH=$CUDA_ROOT/lib/stubs:$CUDA_ROOT/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}
export CARGO_TARGET_DIR=$ROOT/target-cuda
# $ORIGIN/lib: CUDA libraries copied next to the binary are found without LD_LIBRARY_PATH.
export RUSTFLAGS="-C link-arg=-Wl,-rpath,\$ORIGIN/lib"
cargo build --release -p rudder --features cuda
echo "built $CARGO_TARGET_DIR/release/rudder; NEEDED:"
readelf -d "$CARGO_TARGET_DIR/release/rudder" | grep NEEDED
}

# .device/: what the GPU machine needs (the `run` tool's carry, or scp).
pack() {
BIN=${RUDDER_BIN:-$ROOT/target-cuda/release/rudder}
rm -rf .device && mkdir -p .device/fixtures .device/bench
cp "$BIN" .device/rudder
strip .device/rudder
cp scripts/gpu-check.sh .device/
cp examples/bench/*.json .device/bench/
cp -r fixtures/tiny-llama fixtures/tiny-qwen2 .device/fixtures/
mkdir -p .device/data
cp examples/pipeline/sft.jsonl examples/pipeline/prefs.jsonl examples/prompts.jsonl .device/data/
# The carry to a GPU machine is limited to 64 MiB: compress a large binary (gpu-check.sh
# unpacks it).
if [ "$(stat -c %s .device/rudder)" -gt $((48 << 20)) ]; then gzip -9 .device/rudder; fi
du -sh .device
}

case "${1:-all}" in
    all) build && pack ;;
    build) build ;;
    pack) pack ;;
    *) echo "usage: $0 [all|build|pack]" >&2 && exit 2 ;;
esac
