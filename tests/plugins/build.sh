#!/usr/bin/env bash
# Builds the C test plugins into $1 (default target/test-plugins) as WASI
# reactor modules: <out>/<name>/{plugin.json,backend.wasm,migrations/,frontend/}
# plus a second probe version (1.1.0) for upgrade tests. Skips plugins whose
# sources are older than their backend.wasm.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-$HERE/../../target/test-plugins}"
mkdir -p "$OUT"
CC="${WASM_CC:-clang}"
build() { # name source-dir version
    local name="$1" src="$2" version="$3" dest="$OUT/$1"
    local wasm="$dest/backend.wasm"
    if [ -f "$wasm" ] && [ -z "$(find "$src" "$HERE/paca.h" -newer "$wasm" -print -quit)" ]; then
        return 0
    fi
    rm -rf "$dest"; mkdir -p "$dest"
    "$CC" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Werror -DVERSION="\"$version\"" \
        -o "$wasm" "$src"/*.c
    sed "s/\"version\": \"1.0.0\"/\"version\": \"$version\"/" "$src/plugin.json" > "$dest/plugin.json"
    [ -d "$src/migrations" ] && cp -r "$src/migrations" "$dest/"
    [ -d "$src/frontend" ] && cp -r "$src/frontend" "$dest/"
    echo "  built $name $version"
}
build probe "$HERE/probe" 1.0.0
build probe-1.1.0 "$HERE/probe" 1.1.0
build hostile "$HERE/hostile" 1.0.0
build orchestration "$HERE/orchestration" 1.0.0
