#!/usr/bin/env bash
# One epoch of standard training of the Madry CNN on 10,000 MNIST images, on one device and
# data-parallel on two and on DEVICES_WIDE (default cpu,cpu,cpu,cpu), interleaved ROUNDS times
# (default 2). Prints each run's training seconds (the epoch, without validation or test).
# On the CPU the "devices" are the one flex device twice: this shows what the split costs,
# not a speed-up; on a machine with two GPUs pass DEVICE=wgpu.
#   bash bench/devices.sh
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart -q
mkdir -p runs
d="${DEVICE:-cpu}"
wide="${DEVICES_WIDE:-$d,$d,$d,$d}"
report=$(cat <<'PY'
import json, sys
m = json.load(sys.stdin)
print(f"round {sys.argv[1]} devices {sys.argv[2]}: {m['train_seconds']:.1f} s, "
      f"train loss {m['history'][0]['train_loss']:.4f}")
PY
)
for round in $(seq "${ROUNDS:-2}"); do
  for devices in "$d" "$d,$d" "$wide"; do
    out="runs/devices-$round-${devices//,/-}.rampart"
    "$RAMPART_BIN" train --overwrite --dataset mnist --limit 11000 --val-size 1000 --epochs 1 \
      --test-size 0 --devices "$devices" --out "$out" --json | python3 -c "$report" "$round" "$devices"
  done
done
