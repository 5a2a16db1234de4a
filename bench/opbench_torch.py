"""The operations of native/examples/opbench.rs in PyTorch (CPU, 2 threads, batch 128), timed
the same way (2 warm-up calls, mean of 8), so the two tables can be read side by side.
    python3 bench/opbench_torch.py [resnet]
"""
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.manual_seed(0)


def time_it(name, f):
    for _ in range(2):
        f()
    n = 8
    t = time.perf_counter()
    for _ in range(n):
        f()
    print(f"{name:40} {(time.perf_counter() - t) * 1e3 / n:8.2f} ms")


def input_grad(x, f):
    x = x.clone().requires_grad_(True)
    f(x).sum().backward()
    return x.grad


b = 128
if sys.argv[1:] == ["resnet"]:
    for c, hw in [(64, 32), (128, 16), (256, 8), (512, 4)]:
        conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        x = torch.rand(b, c, hw, hw)
        name = f"{c}x{hw}x{hw}"
        with torch.no_grad():
            time_it(f"{name} forward", lambda: conv(x))
        conv.requires_grad_(False)
        time_it(f"{name} forward + input grad", lambda: input_grad(x, conv))
        conv.requires_grad_(True)

        def weight_grad():
            conv.zero_grad()
            conv(x).sum().backward()

        time_it(f"{name} forward + weight grad", weight_grad)
    sys.exit()
c1 = torch.nn.Conv2d(1, 32, 5, padding=2)
c2 = torch.nn.Conv2d(32, 64, 5, padding=2)
x1, x2, x3 = torch.rand(b, 1, 28, 28), torch.rand(b, 32, 14, 14), torch.rand(b, 32, 28, 28)

with torch.no_grad():
    time_it("conv1 forward", lambda: c1(x1))
    time_it("conv2 forward", lambda: c2(x2))
c1.requires_grad_(False)
c2.requires_grad_(False)
time_it("conv1 forward + input grad", lambda: input_grad(x1, c1))
time_it("conv2 forward + input grad", lambda: input_grad(x2, c2))
c2.requires_grad_(True)


def weight_grad():
    c2.zero_grad()
    c2(x2).sum().backward()


time_it("conv2 forward + weight grad", weight_grad)
c2t = torch.nn.Conv2d(64, 32, 5, padding=2)
x2t = torch.rand(b, 64, 14, 14)
fc1 = torch.nn.Linear(3136, 1024)
xf = torch.rand(b, 3136)
with torch.no_grad():
    time_it("conv2 transposed forward", lambda: c2t(x2t))
    time_it("fc1 forward", lambda: fc1(xf))
fc1.requires_grad_(False)
time_it("fc1 forward + input grad", lambda: input_grad(xf, lambda x: torch.relu(fc1(x))))
with torch.no_grad():
    time_it("max-pool forward", lambda: F.max_pool2d(x3, 2))
time_it("max-pool forward + grad", lambda: input_grad(x3, lambda x: F.max_pool2d(x, 2)))
time_it("relu + max-pool forward + grad", lambda: input_grad(x3, lambda x: F.max_pool2d(torch.relu(x), 2)))
time_it("relu forward + grad", lambda: input_grad(x3, torch.relu))
