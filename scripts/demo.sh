#!/usr/bin/env bash
# Builds everything, trains a demo model if there is none, and serves the demo page.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
cargo build --release -p rampart
bash scripts/build-web.sh
mkdir -p www/models
if [ ! -f www/models/demo.rampart ]; then
  echo "training the demo model (standard training, a few minutes on 2 cores)"
  "$RAMPART_BIN" train --dataset mnist --method standard --epochs 2 --conv 16,32 --hidden 128 \
    --out www/models/demo.rampart --test-size 10000
fi
[ -f www/models/samples.json ] || "$RAMPART_BIN" samples --dataset mnist --count 32 --out www/models/samples.json
# The report classifier (reports.html): the default recipe, the encoder served from the shared
# model folder through a link, and one example report per class from the validation split.
ENCODER="$RAMPART_DATA/../models/all-MiniLM-L6-v2"
if [ -f "$RAMPART_DATA/osha/train.json" ] && [ -f "$ENCODER/model.safetensors" ]; then
  if [ ! -f www/models/osha.rampart-text ]; then
    echo "training the report classifier: the default recipe, which fine-tunes the encoder's top layer (about 11 minutes on 2 cores the first time)"
    "$RAMPART_BIN" text train --out www/models/osha.rampart-text
  fi
  ln -sfn "$(cd "$ENCODER" && pwd)" www/models/minilm
  [ -f www/models/reports.json ] || python3 scripts/report_fixtures.py "$RAMPART_DATA/osha/val.json" www/models
else
  echo "no OSHA data or MiniLM under $RAMPART_DATA/..: the report page stays empty (bash scripts/fetch-data.sh)"
fi
PORT="${PORT:-8000}"
echo "demo: http://localhost:$PORT/ (images) and http://localhost:$PORT/reports.html (accident reports)"
exec python3 -m http.server "$PORT" --bind 127.0.0.1 --directory www
