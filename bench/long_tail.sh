#!/usr/bin/env bash
# Long-tailed Fashion-MNIST (imbalance ratio 100, exponential profile, class 0 "T-shirt/top"
# the head and class 9 "ankle boot" the tail; the subset is drawn with --long-tail-seed 0
# after holding out the 5,000-image validation slice): strided CNN, 10 epochs, Adam 1e-3,
# batch 128, for each counter-measure and SEEDS training seeds — plain CE, random
# oversampling, inverse-frequency weighted CE, focal loss (γ 2), oversampling + random
# attribute jitter (half ranges) and oversampling + SIA augmentation (5 steps of 10 % of the
# range, half ranges, no pixel budget). Scored on the whole (balanced) test set: balanced
# accuracy and recall per class. Writes runs/lt-<option>-s<seed>.json; prints the tables.
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart
mkdir -p runs
SEEDS="${SEEDS:-0 1 2}"
OPTIONS="${OPTIONS:-none oversample weighted focal jitter sia}"
for seed in $SEEDS; do
  for b in $OPTIONS; do
    out="runs/lt-$b-s$seed"
    [ -f "$out.json" ] || "$RAMPART_BIN" train --dataset fashion-mnist --arch strided \
      --method standard --long-tail 100 --balance "$b" --epochs 10 --seed "$seed" \
      --test-size 10000 --out "$out.rampart" --metrics "$out.json" --json > /dev/null
  done
done
python3 bench/long_tail_table.py runs
