#!/usr/bin/env bash
# Writes the browser tests' fixtures into $1: a tiny image bundle and test images, and, when
# the OSHA data and MiniLM are present and FIXTURES_TEXT is not 0, a small text bundle, 40
# validation reports and one example report per class.
source "$(dirname "$0")/env.sh"
FIXTURES="$1"
"$RAMPART_BIN" train --dataset mnist --method standard --epochs 1 --limit 3000 --val-size 500 \
  --conv 8,16 --hidden 64 --test-size 500 --out "$FIXTURES/tiny.rampart" --json >/dev/null
"$RAMPART_BIN" samples --dataset mnist --count 8 --out "$FIXTURES/samples.json" >/dev/null
ENCODER="$RAMPART_DATA/../models/all-MiniLM-L6-v2"
if [ "${FIXTURES_TEXT:-1}" != 0 ] && [ -f "$RAMPART_DATA/osha/val.json" ] && [ -f "$ENCODER/model.safetensors" ]; then
  python3 "$ROOT/scripts/report_fixtures.py" "$RAMPART_DATA/osha/val.json" "$FIXTURES" >/dev/null
  # A small head on 300 training reports (embedding them takes about half a minute).
  "$RAMPART_BIN" text train --augment none --limit 300 --epochs 10 --val "$FIXTURES/val40.json" \
    --no-fine-tune --encoder "$ENCODER" --cache-dir "$FIXTURES/cache" --out "$FIXTURES/tiny.rampart-text" >/dev/null
  # The same with the encoder's top layer fine-tuned for one epoch (a version-2 bundle).
  "$RAMPART_BIN" text train --augment none --limit 300 --epochs 10 --val "$FIXTURES/val40.json" \
    --fine-tune --fine-tune-layers 1 --fine-tune-epochs 1 --fine-tune-lr 1e-3 \
    --encoder "$ENCODER" --cache-dir "$FIXTURES/cache" --out "$FIXTURES/tuned.rampart-text" >/dev/null
fi
