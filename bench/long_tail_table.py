"""Tables from bench/long_tail.sh: balanced test accuracy (mean ± sd over seeds) and recall
per class (mean over seeds) for each counter-measure against class imbalance."""
import json
import statistics as st
import sys
from pathlib import Path

runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
options = ["none", "oversample", "weighted", "focal", "jitter", "sia"]
rows = {}
for o in options:
    files = sorted(runs.glob(f"lt-{o}-s*.json"))
    if files:
        rows[o] = [json.loads(f.read_text()) for f in files]
first = next(iter(rows.values()))[0]
print("train counts per class:", first["train_class_counts"])


def ms(values):
    m = 100 * st.mean(values)
    s = 100 * st.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.1f} ± {s:.1f}"


print()
print("| option | seeds | balanced accuracy | head 3 recall | tail 3 recall | train s |")
print("|---|---|---|---|---|---|")
for o, rs in rows.items():
    bal = [r["test_balanced_accuracy"] for r in rs]
    head = [st.mean(r["test_per_class_recall"][:3]) for r in rs]
    tail = [st.mean(r["test_per_class_recall"][-3:]) for r in rs]
    secs = st.mean(r["train_seconds"] for r in rs)
    print(f"| {o} | {len(rs)} | {ms(bal)} | {ms(head)} | {ms(tail)} | {secs:.0f} |")
print()
k = len(first["test_per_class_recall"])
print("| option | " + " | ".join(f"class {c} ({first['train_class_counts'][c]})" for c in range(k)) + " |")
print("|---|" + "---|" * k)
for o, rs in rows.items():
    rec = [st.mean(r["test_per_class_recall"][c] for r in rs) for c in range(k)]
    print(f"| {o} | " + " | ".join(f"{100 * v:.1f}" for v in rec) + " |")
