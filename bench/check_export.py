"""Checks that `rampart export` weights, loaded into the PyTorch twin (bench/twins.py), give
the same logits as Rampart on the same test images.

    python3 bench/check_export.py BUNDLE [--count 20] [--data-dir DIR]
Exits non-zero when the largest absolute logit difference exceeds 1e-4.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from twins import load_exported  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("bundle")
p.add_argument("--count", type=int, default=20)
p.add_argument("--data-dir", help="passed to rampart (default: its own, RAMPART_DATA or ../shared/data)")
a = p.parse_args()
data = ["--data-dir", a.data_dir] if a.data_dir else []
rampart = os.environ.get("RAMPART_BIN", os.path.expanduser("~/.cache/rampart/target/release/rampart"))

with tempfile.TemporaryDirectory() as d:
    st = pathlib.Path(d) / "w.safetensors"
    subprocess.run([rampart, "export", "--bundle", a.bundle, "--format", "safetensors", "--out", str(st)], check=True,
                   capture_output=True)
    model = load_exported(str(st))
    info = json.loads(subprocess.run([rampart, "inspect", a.bundle, "--json"], check=True, capture_output=True).stdout)
    samples = pathlib.Path(d) / "s.json"
    subprocess.run([rampart, "samples", "--dataset", info["header"]["dataset"], "--count", str(a.count), "--out",
                    str(samples), *data], check=True, capture_output=True)
    s = json.loads(samples.read_text())
    x = torch.tensor(s["images"], dtype=torch.float32).view(-1, *s["shape"])
    with torch.no_grad():
        torch_logits = model(x)
    worst = 0.0
    for i in range(len(s["images"])):
        out = subprocess.run([rampart, "predict", "--bundle", a.bundle, "--index", str(i), "--json", *data], check=True,
                             capture_output=True)
        r = torch.tensor(json.loads(out.stdout)["logits"])
        worst = max(worst, (r - torch_logits[i]).abs().max().item())
print(json.dumps({"images": len(s["images"]), "max_abs_logit_diff": worst}))
sys.exit(0 if worst <= 1e-4 else 1)
