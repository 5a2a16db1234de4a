"""Rampart's APGD-CE, APGD-T and Square beside torchattacks' AutoAttack components (PyPI
`torchattacks`, the reference implementations' port) on the same model and samples.

    python3 bench/torchattacks_check.py BUNDLE [--eps 0.1] [--limit 500] [--steps 100] [--queries 5000]

The bundle is exported with `rampart export` and loaded into its PyTorch twin
(`bench/twins.py`); both sides attack its first LIMIT test images. Prints robust accuracy per
attack and exits non-zero when any pair differs by more than 1 point (the issue's tolerance).
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from twins import load_exported  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("RAMPART_BIN", str(Path.home() / ".cache/rampart/target/release/rampart"))


def idx(path):
    for p in (path, path.with_name(path.name + ".gz")):
        if p.exists():
            raw = p.read_bytes()
            return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    raise FileNotFoundError(path)


def test_set(data_dir, dataset, limit):
    folder = Path(data_dir) / dataset
    images = idx(folder / "t10k-images-idx3-ubyte")
    labels = idx(folder / "t10k-labels-idx1-ubyte")
    n = int.from_bytes(images[4:8], "big")
    rows, cols = int.from_bytes(images[8:12], "big"), int.from_bytes(images[12:16], "big")
    x = np.frombuffer(images[16:], np.uint8).reshape(n, 1, rows, cols)[:limit] / 255.0
    y = np.frombuffer(labels[8:], np.uint8)[:limit].astype(np.int64)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def rampart_accuracy(bundle, attack, eps, limit, steps):
    out = subprocess.run([BIN, "eval", "--bundle", bundle, "--attack", attack, "--eps", str(eps),
                          "--steps", str(steps), "--limit", str(limit), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["robust"][0]["accuracy"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--data-dir", default=os.environ.get("RAMPART_DATA", str(ROOT.parent / "shared/data")))
    a = ap.parse_args()
    import torchattacks

    info = json.loads(subprocess.run([BIN, "inspect", a.bundle, "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    dataset = info["header"]["dataset"]
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "w.safetensors")
        subprocess.run([BIN, "export", "--bundle", a.bundle, "--out", weights], check=True,
                       capture_output=True)
        model = load_exported(weights)
    x, y = test_set(a.data_dir, dataset, a.limit)
    k = model.fc2.out_features
    torch.manual_seed(0)
    ours = {
        "apgd-ce": rampart_accuracy(a.bundle, "apgd-ce", a.eps, a.limit, a.steps),
        "apgd-t": rampart_accuracy(a.bundle, "apgd-t", a.eps, a.limit, a.steps),
        "square": rampart_accuracy(a.bundle, "square", a.eps, a.limit, a.queries),
    }
    theirs_attacks = {
        "apgd-ce": torchattacks.APGD(model, norm="Linf", eps=a.eps, steps=a.steps, loss="ce"),
        "apgd-t": torchattacks.APGDT(model, norm="Linf", eps=a.eps, steps=a.steps, n_classes=k),
        "square": torchattacks.Square(model, norm="Linf", eps=a.eps, n_queries=a.queries),
    }
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    print(f"{dataset}, {a.limit} test images, L∞ ε = {a.eps}; clean accuracy (PyTorch twin) "
          f"{100 * clean:.1f} %")
    print("| attack | Rampart | torchattacks | difference (points) |")
    print("|---|---|---|---|")
    worst = 0.0
    for name, attack in theirs_attacks.items():
        adv = torch.cat([attack(x[i:i + 250], y[i:i + 250]) for i in range(0, len(y), 250)])
        with torch.no_grad():
            acc = (model(adv).argmax(1) == y).float().mean().item()
        diff = 100 * (ours[name] - acc)
        worst = max(worst, abs(diff))
        print(f"| {name} | {100 * ours[name]:.1f} % | {100 * acc:.1f} % | {diff:+.1f} |")
    sys.exit(0 if worst <= 1.0 else 1)


if __name__ == "__main__":
    main()
