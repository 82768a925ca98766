#!/usr/bin/env bash
# Rebuilds vendor/candle-core from the published crate and vendor/candle-core.patch (see
# vendor/README.md): fetches candle-core VERSION from crates.io with cargo, drops what the build
# does not need (examples, tests, benches and their Cargo.toml tables), applies the patch.
#   scripts/vendor-candle.sh           rewrite vendor/candle-core
#   scripts/vendor-candle.sh --check   only compare: exit 1 if the committed tree differs
# To move to a newer candle-core: set VERSION, run it, fix the hunks that no longer apply, and
# refresh the patch with the diff the script prints on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${VERSION:-0.11.1}
OUT=vendor/candle-core
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A throwaway package that depends on the released crate (no [patch]): cargo fetches it into
# its registry cache, as for any dependency.
mkdir -p "$tmp/fetch/src"
printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ncandle-core = "=%s"\n' \
  "$VERSION" > "$tmp/fetch/Cargo.toml"
echo 'fn main() {}' > "$tmp/fetch/src/main.rs"
(cd "$tmp/fetch" && cargo fetch --quiet)
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/candle-core-"$VERSION" | head -n 1)
[ -d "$src" ] || { echo "vendor-candle: candle-core $VERSION not found after cargo fetch" >&2; exit 1; }

new="$tmp/candle-core"
cp -r "$src" "$new"
rm -rf "$new"/{.cargo-ok,.cargo_vcs_info.json,Cargo.lock,benches,examples,tests}
# Drop the [[example]], [[test]] and [[bench]] tables: their files are not kept.
awk '/^\[\[(example|test|bench)\]\]$/ { skip = 1; next }
     skip && /^$/ { skip = 0; next }
     !skip' "$src/Cargo.toml" > "$new/Cargo.toml"
(cd "$new" && patch --quiet -p1 < "$OLDPWD/vendor/candle-core.patch")

if [ "${1:-}" = "--check" ]; then
  if diff -r "$new" "$OUT" > "$tmp/diff"; then
    echo "vendor-candle: $OUT is candle-core $VERSION + vendor/candle-core.patch"
  else
    cat "$tmp/diff" >&2
    echo "vendor-candle: $OUT differs from candle-core $VERSION + the patch" >&2
    exit 1
  fi
else
  rm -rf "$OUT"
  cp -r "$new" "$OUT"
  echo "vendor-candle: wrote $OUT (candle-core $VERSION + vendor/candle-core.patch)"
fi
