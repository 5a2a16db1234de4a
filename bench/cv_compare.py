"""Paired comparison of two `rampart text cv --json` reports run on the same folds (same
--folds, --repeats and --seed): the per-run difference B − A of macro-F1, accuracy and each
class's F1, its mean and the corrected resampled t interval (Nadeau & Bengio, as
`metrics::cv_interval95`: sd·sqrt(1/n + 1/(folds − 1)), Student's t with n − 1 degrees of freedom).

    python3 bench/cv_compare.py runs/osha-cv-default-5x3.json runs/osha-cv-seeds3-5x3.json

With --common, two reports of the same --folds and --seed but different --repeats are compared
on the runs both hold (e.g. a 5 x 1 against the first repeat of a 5 x 3: the folds of repeat r
depend only on the seed and r).
"""
import json
import math
import sys

from scipy.stats import t as student_t

args = [x for x in sys.argv[1:] if x != "--common"]
common = "--common" in sys.argv[1:]
a, b = (json.load(open(p)) for p in args[:2])
if a["folds"] != b["folds"] or (a["repeats"] != b["repeats"] and not common):
    sys.exit("the two reports differ in folds or repeats (--common compares the runs both hold)")
if a["config"]["seed"] != b["config"]["seed"]:
    sys.exit("the two reports were split with different seeds")
key = lambda r: (r["repeat"], r["fold"])
ra = {key(r): r for r in a["runs"]}
rb = {key(r): r for r in b["runs"]}
if common:
    shared = ra.keys() & rb.keys()
    ra = {k: ra[k] for k in shared}
    rb = {k: rb[k] for k in shared}
if ra.keys() != rb.keys() or len(ra) < 2:
    sys.exit("the two reports hold different runs")
keys = sorted(ra)
folds = a["folds"]


def interval(d):
    n = len(d)
    m = sum(d) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in d) / (n - 1))
    half = student_t.ppf(0.975, n - 1) * sd * math.sqrt(1 / n + 1 / (folds - 1))
    return m, m - half, m + half


def row(name, get):
    d = [100 * (get(rb[k]) - get(ra[k])) for k in keys]
    m, lo, hi = interval(d)
    wins = sum(v > 0 for v in d)
    print(f"| {name} | {m:+.2f} | {lo:+.2f} to {hi:+.2f} | {wins}/{len(d)} |")


print(f"B − A over {len(keys)} paired runs ({args[0]} → {args[1]}), points of F1 / accuracy\n")
print("| score | mean difference | 95 % interval | runs where B is higher |")
print("| --- | ---: | ---: | ---: |")
row("macro-F1", lambda r: r["macro_f1"])
row("accuracy", lambda r: r["accuracy"])
names = [c["class"] for c in a["logit_adjust"][0]["per_class"]]
for i, name in enumerate(names):
    row(f"F1 {name.lower()[:40]}", lambda r, i=i: r["per_class_f1"][i])
