#!/usr/bin/env bash
# Size of the browser build (after wasm-bindgen without the name section, no wasm-opt): raw
# and gzip -9 bytes.
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
bash scripts/build-web.sh >/dev/null 2>&1
wasm=www/pkg/rampart_web_bg.wasm
echo "{\"raw_bytes\": $(stat -c %s $wasm), \"gzip_bytes\": $(gzip -9 -c $wasm | wc -c)}"
