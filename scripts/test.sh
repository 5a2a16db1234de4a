#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust unit and integration tests (including the
# CLI end-to-end tests), the native wgpu backend on lavapipe, and the browser tests.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
bash scripts/setup.sh

echo "== cargo fmt"
cargo fmt --all -- --check
# clippy (scripts/lint.sh) re-checks every dependency in another mode; it is kept out of this
# command so a run from a cold cache stays well within CI's time.

echo "== Rust tests (core, CLI end to end, wgpu on lavapipe)"
cargo test --release

echo "== browser tests (Chromium: WebGPU and CPU)"
bash scripts/build-web.sh
FIXTURES="$(mktemp -d)"
trap 'rm -rf "$FIXTURES"' EXIT
"$RAMPART_BIN" train --dataset mnist --method standard --epochs 1 --limit 3000 --val-size 500 \
  --conv 8,16 --hidden 64 --test-size 500 --out "$FIXTURES/tiny.rampart" --json >/dev/null
"$RAMPART_BIN" samples --dataset mnist --count 8 --out "$FIXTURES/samples.json" >/dev/null
# The report classifier: a small head on 300 training reports, and a few validation reports.
ENCODER="$RAMPART_DATA/../models/all-MiniLM-L6-v2"
if [ -f "$RAMPART_DATA/osha/val.json" ] && [ -f "$ENCODER/model.safetensors" ]; then
  python3 scripts/report_fixtures.py "$RAMPART_DATA/osha/val.json" "$FIXTURES"
  "$RAMPART_BIN" text train --augment none --limit 300 --epochs 10 --val "$FIXTURES/val40.json" \
    --encoder "$ENCODER" --cache-dir "$FIXTURES/cache" --out "$FIXTURES/tiny.rampart-text" >/dev/null
  export ENCODER
fi
(cd tests/browser && RAMPART_BIN="$RAMPART_BIN" FIXTURES="$FIXTURES" node run.mjs)
