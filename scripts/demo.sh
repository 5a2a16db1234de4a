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
PORT="${PORT:-8000}"
echo "demo: http://localhost:$PORT/"
exec python3 -m http.server "$PORT" --bind 127.0.0.1 --directory www
