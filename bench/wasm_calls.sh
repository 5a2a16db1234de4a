#!/usr/bin/env bash
# Per-call latency of the browser build on its CPU backend, in Node: builds www/pkg and the
# browser tests' tiny CNN (and small text bundle when the OSHA data and MiniLM are present), then
# runs bench/wasm_calls.mjs (prints JSON, medians in ms).
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
bash scripts/build-web.sh >/dev/null 2>&1
cargo build --release -p rampart -q
FIXTURES="$(mktemp -d)"; trap 'rm -rf "$FIXTURES"' EXIT
bash scripts/browser-fixtures.sh "$FIXTURES" >&2
text=()
if [ -f "$FIXTURES/tiny.rampart-text" ]; then
  text=("$FIXTURES/tiny.rampart-text" "$FIXTURES/reports.json" "$RAMPART_DATA/../models/all-MiniLM-L6-v2")
fi
node bench/wasm_calls.mjs www/pkg "$FIXTURES/tiny.rampart" "$FIXTURES/samples.json" "${text[@]}"
