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
bash scripts/browser-fixtures.sh "$FIXTURES"
ENCODER="$RAMPART_DATA/../models/all-MiniLM-L6-v2"
if [ -f "$FIXTURES/tiny.rampart-text" ]; then export ENCODER; fi
(cd tests/browser && RAMPART_BIN="$RAMPART_BIN" FIXTURES="$FIXTURES" node run.mjs)
