"""Derives and checks the matrices of Winograd's F(2x2, 3x3) and F(2x2, 5x5) that
core/src/kernels/winograd.rs uses (Toom-Cook on the points 0, +-1 and 0, +-1, +-2, plus
infinity): A^T and G from the points, B^T solved from the identity itself, then both the 1-D and
the 2-D identity checked on random data in float64. Prints the matrices and the largest error;
exits non-zero if any error exceeds 1e-9 or the matrices differ from the kernel's constants.
    python3 bench/winograd_matrices.py
"""
import sys

import numpy as np

# The constants in core/src/kernels/winograd.rs (F2_3, F2_5).
KERNEL = {
    3: dict(
        at=[[1, 1, 1, 0], [0, 1, -1, 1]],
        g=[[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        bt=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]],
    ),
    5: dict(
        at=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1]],
        g=[
            [1 / 4, 0, 0, 0, 0],
            [-1 / 6] * 5,
            [-1 / 6, 1 / 6, -1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6, 1 / 3, 2 / 3],
            [1 / 24, -1 / 12, 1 / 6, -1 / 3, 2 / 3],
            [0, 0, 0, 0, 1],
        ],
        bt=[
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
    ),
}


def derive(m, r, points):
    a = m + r - 1
    at = np.zeros((m, a))
    g = np.zeros((a, r))
    for j, p in enumerate(points):
        at[:, j] = [p**i for i in range(m)]
        norm = np.prod([p - q for q in points if q != p])
        g[j] = [p**k / norm for k in range(r)]
    at[m - 1, a - 1] = 1
    g[a - 1, r - 1] = 1
    # B^T from y_i = sum_k g_k d_(i+k) for every i, k and input position p.
    rows, rhs = [], []
    for i in range(m):
        for k in range(r):
            for p in range(a):
                coef = np.zeros((a, a))
                coef[:, p] = at[i] * g[:, k]
                rows.append(coef.ravel())
                rhs.append(float(p == i + k))
    bt = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0].reshape(a, a)
    return at, g, bt


def error(at, g, bt, m, r, rng):
    a = m + r - 1
    d, k = rng.standard_normal((a, a)), rng.standard_normal((r, r))
    y = at @ ((g @ k @ g.T) * (bt @ d @ bt.T)) @ at.T
    ref = np.array([[np.sum(k * d[i : i + r, j : j + r]) for j in range(m)] for i in range(m)])
    return np.abs(y - ref).max()


rng = np.random.default_rng(0)
ok = True
for r, points in [(3, [0, 1, -1]), (5, [0, 1, -1, 2, -2])]:
    at, g, bt = derive(2, r, points)
    # The kernel's sign convention: the first row of G and of B^T negated together.
    if bt[0, 0] < 0:
        g[0], bt[0] = -g[0], -bt[0]
    kernel = {name: np.array(v, dtype=float) for name, v in KERNEL[r].items()}
    same = all(np.allclose(kernel[n], v, atol=1e-12) for n, v in [("at", at), ("g", g), ("bt", bt)])
    err = max(error(kernel["at"], kernel["g"], kernel["bt"], 2, r, rng) for _ in range(100))
    print(f"F(2x2, {r}x{r}): derived matrices equal the kernel's: {same}; largest 2-D error {err:.1e}")
    for name, v in [("A^T", at), ("G", g), ("B^T", bt)]:
        print(f"  {name}: {np.round(v, 6).tolist()}")
    ok &= same and err < 1e-9
sys.exit(0 if ok else 1)
