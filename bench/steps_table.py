"""The table of bench/osha_steps.sh: each `rampart text cv --json` report's macro-F1, accuracy and
the F1 of the two smallest classes (mean ± sd over the runs, 95 % corrected resampled interval),
and the paired macro-F1 difference to the row before (same folds; interval as
bench/cv_compare.py).

    python3 bench/steps_table.py runs/osha-step-{1-frozen-ce,2-focal,3-rat,4-abex,5-fine-tune}.json

(rows in the order given: each is paired with the one before it)
"""
import json
import math
import sys

from scipy.stats import t as student_t


def interval(values, folds):
    n = len(values)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    half = student_t.ppf(0.975, n - 1) * sd * math.sqrt(1 / n + 1 / (folds - 1))
    return m, sd, m - half, m + half


def fmt(values, folds):
    m, sd, lo, hi = interval([100 * v for v in values], folds)
    # Scores are percentages: an interval past 0 or 100 says nothing more (as in Rampart).
    lo, hi = max(lo, 0.0), min(hi, 100.0)
    return f"{m:.1f} ± {sd:.1f} ({lo:.1f}–{hi:.1f})"


print("| step | macro-F1 (95 % interval) | paired Δ macro-F1 vs the row above | accuracy | F1 overexertion | F1 violence |")
print("| --- | --- | --- | --- | --- | --- |")
previous = None
for path in sys.argv[1:]:
    r = json.load(open(path))
    folds = r["folds"]
    runs = {(x["repeat"], x["fold"]): x for x in r["runs"]}
    keys = sorted(runs)
    get = lambda k, f: [runs[x][f] for x in k]
    delta = ""
    if previous is not None and sorted(previous) == keys:
        d = [100 * (runs[k]["macro_f1"] - previous[k]["macro_f1"]) for k in keys]
        m, _, lo, hi = interval(d, folds)
        delta = f"{m:+.1f} ({lo:+.1f} to {hi:+.1f})"
    name = path.rsplit("/", 1)[-1].removeprefix("osha-step-").removesuffix(".json")
    print(f"| {name} | {fmt(get(keys, 'macro_f1'), folds)} | {delta} | {fmt(get(keys, 'accuracy'), folds)} "
          f"| {fmt([runs[k]['per_class_f1'][5] for k in keys], folds)} | {fmt([runs[k]['per_class_f1'][6] for k in keys], folds)} |")
    previous = runs
