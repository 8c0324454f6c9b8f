#!/usr/bin/env bash
# Builds the com.paca.github plugin and its catalog artifacts into $1
# (default target/test-plugins/github-package):
#   backend.wasm plugin.json migrations/   an installable directory
#   manifest.tar.gz    plugin.json
#   backend.tar.gz     backend/backend.wasm
#   migrations.tar.gz  migrations/*.sql
#   SHA256SUMS         sha256 of the three archives (the catalog's *_sha256)
# backend.wasm is a WASI reactor (clang --target=wasm32-wasi); rebuilt only
# when a source is newer than it. Archives are reproducible (sorted, mtime 0,
# numeric owner, gzip -n). WASM_CC overrides the compiler.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-$HERE/../../target/test-plugins/github-package}"
CC="${WASM_CC:-clang}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
wasm="$OUT/backend.wasm"
stamp="$OUT/SHA256SUMS"
if [ -f "$wasm" ] && [ -f "$stamp" ] && [ -z "$(find "$HERE/backend" "$HERE/plugin.json" "$HERE/migrations" "$HERE/package.sh" -newer "$stamp" -print -quit)" ]; then
    exit 0
fi
version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$HERE/plugin.json" | head -1)"
"$CC" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Werror -DVERSION="\"$version\"" \
    -o "$wasm.tmp" "$HERE"/backend/*.c
mv "$wasm.tmp" "$wasm"
cp "$HERE/plugin.json" "$OUT/plugin.json"
rm -rf "$OUT/migrations"
cp -r "$HERE/migrations" "$OUT/migrations"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/manifest" "$stage/backend/backend" "$stage/migrations/migrations"
cp "$HERE/plugin.json" "$stage/manifest/plugin.json"
cp "$wasm" "$stage/backend/backend/backend.wasm"
cp "$HERE"/migrations/*.sql "$stage/migrations/migrations/"
pack() { # kind
    (cd "$stage/$1" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - * |
        gzip -n -9 > "$OUT/$1.tar.gz.tmp")
    mv "$OUT/$1.tar.gz.tmp" "$OUT/$1.tar.gz"
}
pack manifest
pack backend
pack migrations
(cd "$OUT" && sha256sum manifest.tar.gz backend.tar.gz migrations.tar.gz > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
echo "  packaged com.paca.github $version into $OUT"
