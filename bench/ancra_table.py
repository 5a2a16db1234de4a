"""Table from bench/ancra_table.sh: clean and robust accuracy (%) per training method, the
robust accuracy after the plain white-box attacks (APGD-CE, APGD-T), after the adaptive RA
attacks (RA models only) and after Square (the final, worst-case figure), and the sanity
flags."""
import json
import sys
from pathlib import Path

runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
dataset = sys.argv[2] if len(sys.argv) > 2 else "fashion-mnist"
rows = ["standard", "pgd-at", "pgd-at+ancra", "trades", "trades+ancra", "mart", "mart+ancra"]
print("| training | test clean (10k) | clean | after APGD-CE, APGD-T | after adaptive RA attacks "
      "| final (+ Square) | train s | sanity |")
print("|---|---|---|---|---|---|---|---|")
for row in rows:
    base = runs / f"ancra-{dataset}-{row}"
    if not (base.with_suffix(".suite.json")).exists() and not Path(f"{base}.suite.json").exists():
        continue
    t = json.loads(Path(f"{base}.train.json").read_text())
    s = json.loads(Path(f"{base}.suite.json").read_text())["report"]
    after = {st["attack"]: st["robust_accuracy"] for st in s["stages"]}
    white = after.get("apgd-t", after["apgd-ce"])
    ra = after.get("ra-bpda")
    flags = s["sanity"]["flags"] if s.get("sanity") else []
    print(f"| {row} | {100 * t['test_clean_accuracy']:.1f} | {100 * s['clean_accuracy']:.1f} | "
          f"{100 * white:.1f} | {'—' if ra is None else f'{100 * ra:.1f}'} | "
          f"{100 * s['robust_accuracy']:.1f} | {t['train_seconds']:.0f} | "
          f"{'; '.join(flags) if flags else 'passed'} |")
