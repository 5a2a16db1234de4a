#!/usr/bin/env bash
# Transfer table (SIA, arXiv 2303.13010): Fashion-MNIST strided CNNs trained with the same
# budget (5 epochs, Adam 1e-3, batch 128) — standard, PGD-AT (ε 0.1, 7 steps) and SIA-AT
# (ε 0.1 + every attribute over its whole range, 5 steps of 5 % of the range; ε and the
# attribute bounds ramp up over the first epoch) — attacked on the first LIMIT test images by
# FGSM, PGD-20 and APGD-CE-100 (ε 0.1), SIA-50 with ε 0.1 and with ε 0 (attributes only), and each
# attribute alone (worst case over an 11-point grid of its range).
# Writes runs/transfer-<model>*.json and prints the markdown table.
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart
mkdir -p runs
LIMIT="${LIMIT:-500}"
EPOCHS="${EPOCHS:-5}"
common=(--dataset fashion-mnist --arch strided --epochs "$EPOCHS" --eps 0.1 --test-size 10000 --json)
train() { # name, extra flags
  local name=$1; shift
  [ -f "runs/transfer-$name.rampart" ] || "$RAMPART_BIN" train "${common[@]}" "$@" \
    --out "runs/transfer-$name.rampart" > "runs/transfer-$name.train.json"
}
train standard --method standard
train pgd-at --method pgd-at --steps 7 --eps-ramp 1
train sia-at --method sia-at --steps 5 --attribute-step 0.05 --eps-ramp 1
for m in standard pgd-at sia-at; do
  b="runs/transfer-$m.rampart"
  "$RAMPART_BIN" eval --bundle "$b" --attack fgsm,pgd --eps 0.1 --steps 20 --limit "$LIMIT" \
    --json > "runs/transfer-$m.eval.json"
  "$RAMPART_BIN" eval --bundle "$b" --attack apgd-ce --eps 0.1 --steps 100 --limit "$LIMIT" \
    --json > "runs/transfer-$m.apgd.json"
  "$RAMPART_BIN" diagnose --bundle "$b" --eps 0.1 --steps 50 --limit "$LIMIT" --sweep-points 0 \
    --out "runs/transfer-$m-sia" --json > "runs/transfer-$m.sia.json"
  "$RAMPART_BIN" diagnose --bundle "$b" --eps 0 --steps 50 --limit "$LIMIT" --sweep-points 11 \
    --out "runs/transfer-$m-sia0" --json > "runs/transfer-$m.sia0.json"
done
python3 bench/transfer_table.py runs
