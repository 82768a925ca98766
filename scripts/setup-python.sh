#!/usr/bin/env bash
# Creates .venv with the reference stack (PyTorch, transformers, TRL, PEFT, gguf) used ONLY by the
# fixture and side-by-side benchmark scripts. CI never needs it: fixtures are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch transformers trl peft safetensors numpy gguf sentencepiece accelerate datasets psutil
.venv/bin/python -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)"
