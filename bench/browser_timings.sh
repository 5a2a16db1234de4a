#!/usr/bin/env bash
# Browser timings (headless Chromium; WebGPU on SwiftShader without a GPU, and the CPU
# fallback): runs the browser tests and prints the timings they record.
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
bash scripts/build-web.sh >/dev/null 2>&1
cargo build --release -p rampart -q
FIXTURES="$(mktemp -d)"; trap 'rm -rf "$FIXTURES"' EXIT
"$RAMPART_BIN" train --dataset mnist --method standard --epochs 1 --limit 3000 --val-size 500 \
  --conv 8,16 --hidden 64 --test-size 500 --out "$FIXTURES/tiny.rampart" --json >/dev/null
"$RAMPART_BIN" samples --dataset mnist --count 8 --out "$FIXTURES/samples.json" >/dev/null
(cd tests/browser && RAMPART_BIN="$RAMPART_BIN" FIXTURES="$FIXTURES" node run.mjs >&2)
cat "$FIXTURES/browser-timings.json"
