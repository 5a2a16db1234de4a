#!/usr/bin/env bash
# Builds rampart-web for the browser into www/pkg.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
cargo build -p rampart-web --release --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir www/pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/rampart_web.wasm"
