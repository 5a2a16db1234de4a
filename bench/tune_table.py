"""Prints the OSHA tuning table (Markdown) from runs/osha-tune-*.json (bench/osha_tune.sh):
macro-F1 mean ± sd over 5 folds × 2 repeats at several logit-adjustment strengths τ."""
import json
import statistics
from pathlib import Path

ROWS = [
    ("recipe", "recipe before tuning (RAT ε 0.05, focal γ 2, balanced α, MLP 512, 30 epochs)"),
    ("eps0.02", "RAT ε 0.02"),
    ("eps0.1", "RAT ε 0.1"),
    ("eps0.2", "**RAT ε 0.2 (new default)**"),
    ("eps0.3", "RAT ε 0.3"),
    ("eps0.5", "RAT ε 0.5"),
    ("hidden1024", "hidden 1024 (ε 0.05)"),
    ("gamma1", "focal γ 1 (ε 0.05)"),
    ("nobalance", "no class-balanced α (ε 0.05)"),
    ("epochs60", "60 epochs (ε 0.05)"),
    ("eps0.2-ce", "ε 0.2, cross-entropy"),
    ("eps0.2-epochs60", "ε 0.2, 60 epochs"),
]
print("| `bench/osha_tune.sh` row | macro-F1, τ = 0 | τ = 0.25 | τ = 0.5 | τ = 1 | accuracy (τ = 0) |")
print("|---|---:|---:|---:|---:|---:|")
for name, label in ROWS:
    f = Path(f"runs/osha-tune-{name}.json")
    if not f.exists():
        print(f"| {label} | (not run) | | | | |")
        continue
    t = {x["tau"]: x for x in json.loads(f.read_text())["logit_adjust"]}
    cell = lambda tau: f"{100 * t[tau]['macro_f1']['mean']:.1f} ± {100 * t[tau]['macro_f1']['sd']:.1f}"
    print(f"| {label} | {cell(0)} | {cell(0.25)} | {cell(0.5)} | {cell(1)} | {100 * t[0]['accuracy']['mean']:.1f} |")

# Per-class F1 of the default (ε 0.2, τ = 0), mean ± sample sd over the folds and repeats, in the
# order of the class list in core/src/data/text.rs.
CLASSES = ["falls", "contact", "exposure", "transportation", "fires", "overexertion", "violence"]
f = Path("runs/osha-tune-eps0.2.json")
if f.exists():
    runs = [r for r in json.loads(f.read_text())["runs"] if r["tau"] == 0]
    cells = []
    for i, name in enumerate(CLASSES):
        v = [100 * r["per_class_f1"][i] for r in runs]
        cells.append(f"{name} {statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}")
    print(f"\nPer class (RAT ε 0.2, τ = 0, {len(runs)} runs): " + ", ".join(cells))
