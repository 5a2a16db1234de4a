"""Writes synthetic data in the CIFAR-10 binary layout (no CIFAR-10 copy is available here):
DIR/cifar10/data_batch_{1..5}.bin and test_batch.bin, each record a label byte and 3×1024
channel-planar bytes. Class k is a bright square whose position and colour depend on k, on
uniform noise — the same scheme as native/tests/robust_cli.rs.

    python3 bench/cifar_layout.py DIR [--per-batch 200] [--test 200] [--seed 0]
"""
import argparse
import pathlib

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--per-batch", type=int, default=200)
p.add_argument("--test", type=int, default=200)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
rng = np.random.default_rng(a.seed)


def batch(n):
    labels = np.arange(n) % 10
    img = rng.integers(0, 64, size=(n, 3, 32, 32), dtype=np.uint8)
    for i, k in enumerate(labels):
        for ch in range(3):
            r, c = k % 4, (k // 4 + ch) % 4
            img[i, ch, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 180
    return np.concatenate([labels[:, None].astype(np.uint8), img.reshape(n, -1)], axis=1).tobytes()


d = pathlib.Path(a.dir) / "cifar10"
d.mkdir(parents=True, exist_ok=True)
for b in range(1, 6):
    (d / f"data_batch_{b}.bin").write_bytes(batch(a.per_batch))
(d / "test_batch.bin").write_bytes(batch(a.test))
print(f"wrote {5 * a.per_batch} training and {a.test} test records under {d}")
