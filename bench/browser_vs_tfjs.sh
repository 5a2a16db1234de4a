#!/usr/bin/env bash
# Rampart against TensorFlow.js on the browser tests' tiny CNN in headless Chromium
# (bench/tfjs_compare.mjs): classify and PGD-20 times on the CPU (Rampart's CPU backend
# against TF.js's wasm backend) and on WebGPU (SwiftShader without a GPU), logits checked to
# agree within 1e-4, and what each downloads. Prints a JSON object, then markdown tables.
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
bash scripts/build-web.sh >/dev/null 2>&1
cargo build --release -p rampart -q
# TF.js is among the browser tests' packages; a node_modules from before it lacks it.
[ -d tests/browser/node_modules/@tensorflow/tfjs-backend-webgpu ] ||
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
FIXTURES="$(mktemp -d)"; trap 'rm -rf "$FIXTURES"' EXIT
bash scripts/browser-fixtures.sh "$FIXTURES"
# The same weights for TF.js, in the PyTorch twin's names and layouts.
"$RAMPART_BIN" export --bundle "$FIXTURES/tiny.rampart" --format safetensors \
  --out "$FIXTURES/tiny.safetensors" >/dev/null
FIXTURES="$FIXTURES" node bench/tfjs_compare.mjs
