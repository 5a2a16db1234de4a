#!/usr/bin/env bash
# Builds rampart-web for the browser into www/pkg.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
cargo build -p rampart-web --release --target wasm32-unknown-unknown
# The name section only symbolises stack traces (7.6 of 46.7 MB, bench/wasm_size.sh); panics still print their
# message through the panic hook.
wasm-bindgen --target web --remove-name-section --remove-producers-section --out-dir www/pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/rampart_web.wasm"
