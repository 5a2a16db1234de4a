#!/usr/bin/env bash
# The documented hyper-parameter search for `rampart text train`'s head (frozen encoder): repeated
# stratified 5-fold CV (2 repeats) on train + val, one change at a time from the recipe, each
# scored at several post-hoc logit-adjustment strengths τ. Writes runs/osha-tune-<name>.json
# (kept unless FORCE=1) and prints macro-F1 mean ± sd per (row, τ).
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart
mkdir -p runs
TAUS="${TAUS:-0,0.25,0.5,0.75,1}"
row() {
  local name="$1"; shift
  if [ -f "runs/osha-tune-$name.json" ] && [ -z "${FORCE:-}" ]; then return; fi
  echo "== $name: $*"
  "$RAMPART_BIN" text cv --json --repeats 2 --no-fine-tune --logit-adjust "$TAUS" "$@" > "runs/osha-tune-$name.json.tmp"
  mv "runs/osha-tune-$name.json.tmp" "runs/osha-tune-$name.json"
}
# First round, from the recipe before tuning (RAT ε 0.05; the default is now 0.2).
row recipe --rat-eps 0.05
row eps0.02 --rat-eps 0.02
row eps0.1 --rat-eps 0.1
row eps0.2 --rat-eps 0.2
row hidden1024 --rat-eps 0.05 --hidden 1024
row gamma1 --rat-eps 0.05 --gamma 1
row epochs60 --rat-eps 0.05 --epochs 60
row nobalance --rat-eps 0.05 --balanced-alpha false
# Second round, around the best of the first (RAT ε 0.2; cross-entropy; longer training).
row eps0.3 --rat-eps 0.3
row eps0.5 --rat-eps 0.5
row eps0.2-ce --rat-eps 0.2 --loss ce
row eps0.2-epochs60 --rat-eps 0.2 --epochs 60
python3 - <<'PY'
import json, glob
rows = []
for f in sorted(glob.glob("runs/osha-tune-*.json")):
    r = json.load(open(f))
    name = f[len("runs/osha-tune-"):-len(".json")]
    cells = "  ".join(f"τ={t['tau']:g}: {100*t['macro_f1']['mean']:.1f}±{100*t['macro_f1']['sd']:.1f}" for t in r["logit_adjust"])
    print(f"{name:>12}  {cells}")
PY
