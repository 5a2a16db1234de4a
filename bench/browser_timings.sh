#!/usr/bin/env bash
# Browser timings (headless Chromium; WebGPU on SwiftShader without a GPU, and the CPU
# fallback): runs the browser tests and prints the timings they record (image model; report
# classifier: load, classify, probe; encoder parity).
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
bash scripts/build-web.sh >/dev/null 2>&1
cargo build --release -q
FIXTURES="$(mktemp -d)"; trap 'rm -rf "$FIXTURES"' EXIT
bash scripts/browser-fixtures.sh "$FIXTURES"
ENCODER="$RAMPART_DATA/../models/all-MiniLM-L6-v2"
if [ -f "$FIXTURES/tiny.rampart-text" ]; then export ENCODER; fi
(cd tests/browser && RAMPART_BIN="$RAMPART_BIN" FIXTURES="$FIXTURES" node run.mjs >&2)
cat "$FIXTURES/browser-timings.json"
