#!/usr/bin/env bash
# Formatting and lints, native and wasm.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo clippy --release -p rampart-web --target wasm32-unknown-unknown -- -D warnings
