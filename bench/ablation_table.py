"""Prints the OSHA cross-validation ablation table (Markdown) from runs/osha-cv-*.json."""
import json
from pathlib import Path

ROWS = [
    ("runs/osha-tune-eps0.2.json", "**tuned recipe (defaults): as below with RAT ε = 0.2**"),
    ("tuned-augmentnone", "tuned recipe, no augmentation"),
    ("tuned-augmentown", "tuned recipe, own augmentation instead of the published one"),
    ("tuned-both", "tuned recipe, embedding + TF-IDF (20,000 terms) features"),
    ("default", "recipe before tuning: published augmentation, RAT (none/gaussian/FGM/PGD at 1/4 each, ε = 0.05), focal γ 2, balanced α"),
    ("augmentnone", "no augmentation"),
    ("augmentown", "own augmentation (`rampart augment --generator offline`)"),
    ("ratoff", "no RAT"),
    ("ratgaussian", "RAT: Gaussian noise only"),
    ("ratfgm", "RAT: FGM only"),
    ("ratpgd", "RAT: PGD only"),
    ("lossce", "cross-entropy instead of focal"),
    ("logreg", "baseline: embedding + logistic regression"),
    ("tfidf", "baseline: TF-IDF + logistic regression"),
]
print("| row | macro-F1 | accuracy | weighted-F1 |")
print("|---|---|---|---|")
for name, label in ROWS:
    f = Path(name if name.startswith("runs/") else f"runs/osha-cv-{name}.json")
    if not f.exists():
        print(f"| {label} | (no result: see the text) | | |")
        continue
    r = json.loads(f.read_text())
    if "logit_adjust" in r:  # the first τ (0) is the reported one
        r = {**r, **{k: r["logit_adjust"][0][k] for k in ("macro_f1", "accuracy", "weighted_f1")}}
    cell = lambda k: f"{100 * r[k]['mean']:.1f} ± {100 * r[k]['sd']:.1f}"
    print(f"| {label} | {cell('macro_f1')} | {cell('accuracy')} | {cell('weighted_f1')} |")
