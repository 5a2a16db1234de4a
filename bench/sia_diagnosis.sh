#!/usr/bin/env bash
# SIA on standard MNIST and Fashion-MNIST models: success of the semantic attack (attributes +
# an L∞ pixel budget ε, including ε = 0) beside PGD at the same pixel budget, on the first
# LIMIT test images, and the attribute histograms (runs/sia-<dataset>-eps<ε>/).
# MNIST uses runs/mnist-standard.rampart (bench/mnist_acceptance.sh standard); the
# Fashion-MNIST model is trained here if missing (strided network, standard training, 3 epochs).
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart
mkdir -p runs
LIMIT="${LIMIT:-500}"
[ -f runs/mnist-standard.rampart ] || bash bench/mnist_acceptance.sh standard
[ -f runs/fashion-standard.rampart ] || "$RAMPART_BIN" train --dataset fashion-mnist --arch strided \
  --method standard --epochs 3 --out runs/fashion-standard.rampart
for ds in mnist fashion; do
  for eps in 0 0.05 0.1; do
    "$RAMPART_BIN" diagnose --bundle "runs/$ds-standard.rampart" --limit "$LIMIT" --eps "$eps" \
      --steps 50 --out "runs/sia-$ds-eps$eps" --json > "runs/sia-$ds-eps$eps.json"
  done
  "$RAMPART_BIN" eval --bundle "runs/$ds-standard.rampart" --attack pgd --eps 0.05,0.1 --steps 50 \
    --limit "$LIMIT" --json > "runs/sia-$ds-pgd.json"
done
python3 - <<'PY'
import json
print("| model | clean | ε | PGD-50 accuracy | SIA-50 accuracy (attributes + ε) | SIA dominant attributes |")
print("|---|---|---|---|---|---|")
for ds in ["mnist", "fashion"]:
    pgd = json.load(open(f"runs/sia-{ds}-pgd.json"))
    by_eps = {round(r["eps"], 3): r["accuracy"] for r in pgd["robust"]}
    for eps in ["0", "0.05", "0.1"]:
        d = json.load(open(f"runs/sia-{ds}-eps{eps}.json"))
        acc = d["clean_correct"] * (1 - d["success_rate"]) / d["samples"]
        top = sorted(zip(d["attributes"], d["overall"]["dominant"]), key=lambda t: -t[1])[:3]
        tops = ", ".join(f"{a} {n}" for a, n in top)
        p = "—" if eps == "0" else f"{100 * by_eps[float(eps)]:.1f} %"
        print(f"| {ds} standard | {100 * pgd['clean_accuracy']:.1f} % | {eps} | {p} | {100 * acc:.1f} % | {tops} |")
PY
