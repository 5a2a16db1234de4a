#!/usr/bin/env bash
# Builds rampart-web for the browser into www/pkg.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
cargo build -p rampart-web --profile web --target wasm32-unknown-unknown
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/web/rampart_web.wasm"
# Unless the module runs its static constructors itself (`start` in web/src/api.rs), the linker
# wraps every export in a call to all of them ("<name>.command_export" in the name section),
# which made each browser call ~0.7 s slower.
if grep -q 'command_export' "$wasm"; then
  echo "error: $wasm reruns its static constructors on every export call" >&2
  exit 1
fi
# The name section only symbolises stack traces (8.7 of 32.6 MB, bench/wasm_size.sh); panics
# still print their message through the panic hook.
wasm-bindgen --target web --remove-name-section --remove-producers-section --out-dir www/pkg "$wasm"
