#!/usr/bin/env bash
# PGD-AT on Fashion-MNIST (ε = 0.1) at a longer budget than bench/ancra_table.sh: strided CNN,
# EPOCHS epochs (default 10), the epoch with the best PGD-10 accuracy on the 5,000-image
# validation slice kept; then PGD-20 on the whole test set (the reference point's attack) and
# the autoattack suite on its first 300 images.
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart
mkdir -p runs
EPOCHS="${EPOCHS:-10}"
out="runs/fashion-pgd-at-${EPOCHS}ep"
[ -f "$out.rampart" ] || "$RAMPART_BIN" train --dataset fashion-mnist --arch strided \
  --method pgd-at --eps 0.1 --steps 7 --eps-ramp 1 --epochs "$EPOCHS" --seed 0 \
  --val-pgd-steps 10 --val-pgd-samples 500 --keep-best --test-size 10000 \
  --out "$out.rampart" --metrics "$out.train.json" --json > /dev/null
"$RAMPART_BIN" eval --bundle "$out.rampart" --attack pgd --eps 0.1 --steps 20 --step-size 0.025 \
  --json > "$out.pgd20.json"
"$RAMPART_BIN" eval --bundle "$out.rampart" --suite autoattack --eps 0.1 --limit 300 \
  --out "$out.suite.json" --json > /dev/null
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
t = json.load(open(f"{out}.train.json"))
p = json.load(open(f"{out}.pgd20.json"))
s = json.load(open(f"{out}.suite.json"))["report"]
print(json.dumps({"kept_epoch": t["kept_epoch"], "train_seconds": round(t["train_seconds"]),
                  "test_clean": p["clean_accuracy"], "test_pgd20": p["robust"][0]["accuracy"],
                  "suite_300_clean": s["clean_accuracy"], "suite_300_robust": s["robust_accuracy"]}))
PY
