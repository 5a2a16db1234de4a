#!/usr/bin/env bash
# Size of the browser build (after wasm-bindgen without the name section, no wasm-opt): raw
# and gzip -9 bytes; the same with the name section kept; and the code size per crate.
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
bash scripts/build-web.sh >/dev/null 2>&1
wasm=www/pkg/rampart_web_bg.wasm
cargo_wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/web/rampart_web.wasm"
named="$(mktemp -d)"
trap 'rm -rf "$named"' EXIT
wasm-bindgen --target web --out-dir "$named" "$cargo_wasm"
echo "{\"raw_bytes\": $(stat -c %s $wasm), \"gzip_bytes\": $(gzip -9 -c $wasm | wc -c)," \
  "\"with_names_raw_bytes\": $(stat -c %s "$named/rampart_web_bg.wasm")," \
  "\"with_names_gzip_bytes\": $(gzip -9 -c "$named/rampart_web_bg.wasm" | wc -c)}"
python3 bench/wasm_crates.py "$named/rampart_web_bg.wasm"
