"""Markdown transfer table from bench/sia_transfer.sh's JSON files: accuracy (%) of each model
under each attack on the same test images."""
import json
import sys
from pathlib import Path

runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
models = ["standard", "pgd-at", "sia-at"]


def load(m, kind):
    return json.loads((runs / f"transfer-{m}.{kind}.json").read_text())


def sia_accuracy(d):
    return d["clean_correct"] * (1 - d["success_rate"]) / d["samples"]


first = load(models[0], "sia0")
attrs = [s["attribute"] for s in first["sweeps"]]
head = ["model", "test clean (10k)", "clean", "FGSM", "PGD-20", "APGD-CE", "SIA-50 ε0.1", "SIA-50 ε0"] + attrs
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for m in models:
    t, e = load(m, "train"), load(m, "eval")
    rob = {r["attack"]: r["accuracy"] for r in e["robust"]}
    sia, sia0 = load(m, "sia"), load(m, "sia0")
    sweeps = {s["attribute"]: s["worst_case_accuracy"] for s in sia0["sweeps"]}
    apgd = load(m, "apgd")["robust"][0]["accuracy"]
    cells = [m, t["test_clean_accuracy"], e["clean_accuracy"], rob["fgsm-linf"], rob["pgd-linf"], apgd,
             sia_accuracy(sia), sia_accuracy(sia0)] + [sweeps[a] for a in attrs]
    print("| " + " | ".join([cells[0]] + [f"{100 * v:.1f}" for v in cells[1:]]) + " |")
