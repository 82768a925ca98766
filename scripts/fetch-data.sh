#!/usr/bin/env bash
# Fetches the demo datasets shipped in the sdist of PyPI package `llamafactory==0.9.5` (hubs are
# not reachable from our machines, PyPI is): data/alpaca_en_demo.json (SFT, Alpaca rows) and
# data/dpo_en_demo.json (preferences). Idempotent. Usage: scripts/fetch-data.sh [DEST]
# (DEST defaults to .cache/data/ in the workspace root). Prints the folder as the last line.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/.cache/data}"
FILES=(alpaca_en_demo.json dpo_en_demo.json)
PKG="llamafactory==0.9.5"

if [[ -s "$DEST/${FILES[0]}" && -s "$DEST/${FILES[1]}" ]]; then
    echo "$DEST"
    exit 0
fi

mkdir -p "$DEST"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --no-deps --no-binary :all: "$PKG" -d "$TMP/dl" >&2

python3 - "$TMP/dl" "$DEST" "${FILES[@]}" <<'PY'
import pathlib, sys, tarfile

src, dest, names = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
archive = next(src.glob("*.tar.gz"))
with tarfile.open(archive) as tar:
    for name in names:
        member = next(m for m in tar.getmembers() if m.name.endswith("/data/" + name))
        data = tar.extractfile(member).read()
        # Write then rename, so an interrupted run never leaves a half file behind.
        part = dest / (name + ".part")
        part.write_bytes(data)
        part.rename(dest / name)
        print(f"{name}: {len(data)} bytes", file=sys.stderr)
PY
echo "$DEST"
