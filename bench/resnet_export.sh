#!/usr/bin/env bash
# PreAct ResNet-18 export check: trains a narrow ResNet (width 8, one epoch) plain (PGD-AT) and
# with ANCRA (TRADES + RA blocks) on generated CIFAR-10-layout data, exports each with
# `rampart export`, and compares the PyTorch twin's logits (bench/twins.py) with Rampart's on 20
# test images (bench/check_export.py; it fails above 1e-4).
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart
export RAMPART_BIN
data="$(mktemp -d)"
trap 'rm -rf "$data"' EXIT
python3 bench/cifar_layout.py "$data"
for row in "plain --method pgd-at" "ancra --method trades --ancra"; do
  name="${row%% *}"
  # shellcheck disable=SC2086
  "$RAMPART_BIN" train --overwrite --dataset cifar10 --data-dir "$data" --arch preact-resnet18 \
    --resnet-width 8 --eps 0.031 --steps 2 --epochs 1 --batch-size 50 --val-size 100 \
    --test-size 0 --out "$data/$name.rampart" --json ${row#* } > /dev/null
  # An assignment, so that a failed check stops the script.
  result="$(python3 bench/check_export.py "$data/$name.rampart" --data-dir "$data")"
  echo "$name: $result"
done
