#!/usr/bin/env bash
# Cross-validated ablation of the ABEX-RAT recipe and the baselines on the OSHA train + val
# reports (5 folds × 2 repeats; augmented reports join a training fold only when all their
# source reports are in it), all on the frozen encoder. Writes runs/osha-cv-<row>.json (existing files are kept unless
# FORCE=1) and prints the table for docs/RESULTS.md (python3 bench/ablation_table.py).
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart
mkdir -p runs
[ -f runs/augment-offline.jsonl ] || "$RAMPART_BIN" augment --generator offline --out runs/augment-offline.jsonl
row() {
  local name="$1"; shift
  if [ -f "runs/osha-cv-$name.json" ] && [ -z "${FORCE:-}" ]; then return; fi
  echo "== $name: $*"
  "$RAMPART_BIN" text cv --json --repeats 2 --no-fine-tune "$@" > "runs/osha-cv-$name.json.tmp"
  mv "runs/osha-cv-$name.json.tmp" "runs/osha-cv-$name.json"
}
# The recipe before tuning (RAT ε 0.05; `text train` now defaults to 0.2, see
# bench/osha_tune.sh) and one change at a time.
row default --rat-eps 0.05
row augmentnone --rat-eps 0.05 --augment none
row augmentown --rat-eps 0.05 --augment file --augment-file runs/augment-offline.jsonl
row ratoff --rat off
row ratgaussian --rat-eps 0.05 --rat 0,1,0,0
row ratfgm --rat-eps 0.05 --rat 0,0,1,0
row ratpgd --rat-eps 0.05 --rat 0,0,0,1
row lossce --rat-eps 0.05 --loss ce
# The tuned frozen recipe (the defaults but the encoder, RAT ε 0.2; its own row is runs/osha-tune-eps0.2.json)
# without augmentation and with Rampart's own.
row tuned-augmentnone --augment none
row tuned-augmentown --augment file --augment-file runs/augment-offline.jsonl
# Baselines: logistic regression (no hidden layer, cross-entropy, no RAT, no augmentation).
row logreg --hidden 0 --loss ce --balanced-alpha false --rat off --augment none --lr 0.01 --epochs 50
row tfidf --features tfidf --hidden 0 --loss ce --balanced-alpha false --rat off --augment none --lr 0.01 --epochs 50
# Embedding + TF-IDF (20,000 terms) through the MLP with the tuned recipe: the slowest row.
row tuned-both --features both
python3 bench/ablation_table.py
