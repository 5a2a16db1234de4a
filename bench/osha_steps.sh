#!/usr/bin/env bash
# The accident-report recipe built up one step at a time, each step cross-validated on the same
# 5 folds × 3 repeats (rampart text cv defaults) over train + validation, cache warm or cold:
#   frozen MiniLM + MLP, cross-entropy → + focal loss (balanced α) → + RAT (ε 0.2)
#   → + ABEX augmentation → + the encoder's top layer fine-tuned (the default recipe).
# Then, each paired against the frozen recipe with ABEX: a seed ensemble of three heads, and
# that recipe without RAT.
# Writes runs/osha-step-*.json (a step whose file exists is kept; FORCE=1 reruns it) and prints
# the table with each step's paired difference to the step before (bench/steps_table.py).
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -q
mkdir -p runs
step() {
  local name="$1"; shift
  if [ -s "runs/osha-step-$name.json" ] && [ "${FORCE:-0}" != 1 ]; then return; fi
  echo "== $name: rampart text cv $*" >&2
  "$RAMPART_BIN" text cv "$@" --json > "runs/osha-step-$name.json.tmp"
  mv "runs/osha-step-$name.json.tmp" "runs/osha-step-$name.json"
}
step 1-frozen-ce --no-fine-tune --augment none --rat off --loss ce
step 2-focal --no-fine-tune --augment none --rat off
step 3-rat --no-fine-tune --augment none
step 4-abex --no-fine-tune
step 5-fine-tune
python3 bench/steps_table.py runs/osha-step-{1-frozen-ce,2-focal,3-rat,4-abex,5-fine-tune}.json
step 4-abex-ensemble --no-fine-tune --seeds 3
python3 bench/cv_compare.py runs/osha-step-4-abex.json runs/osha-step-4-abex-ensemble.json
# RAT's part once ABEX is in: the frozen recipe without it, paired against it.
step 4-abex-without-rat --no-fine-tune --rat off
python3 bench/cv_compare.py runs/osha-step-4-abex.json runs/osha-step-4-abex-without-rat.json
