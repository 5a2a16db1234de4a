"""Writes browser-test fixtures from an OSHA-format file: val40.json (its first 40 reports)
and reports.json ([{text, label}] of one short report per class, for the demo page too).

    python3 scripts/report_fixtures.py VAL.json OUT_DIR
"""
import json
import sys
from pathlib import Path

rows = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
(out / "val40.json").write_text(json.dumps(rows[:40]))


def text(r):
    return " ".join(f"{r.get('title', '')} {r.get('summary', '')}".split())


label_key = next(k for k in ("gold", "label", "event") if k in rows[0])
by_class = {}
for r in sorted(rows, key=lambda r: len(text(r))):
    if len(text(r).split()) >= 25:
        by_class.setdefault(r[label_key], text(r))
reports = [{"text": t, "label": c} for c, t in sorted(by_class.items())]
(out / "reports.json").write_text(json.dumps(reports, indent=1))
print(f"{len(reports)} example reports, 40 validation reports -> {out}")
