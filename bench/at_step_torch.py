"""One PGD-k adversarial-training step of the Madry MNIST CNN in PyTorch, timed like
`rampart bench-step`: same network (bench/twins.py), batch, PGD (L-inf, eps 0.3, step 0.01,
random start, model in eval mode for the attack), Adam, real MNIST batches.

    python3 bench/at_step_torch.py [--device cpu|cuda] [--steps 10] [--batch-size 128]
    python3 bench/at_step_torch.py --arch preact-resnet18 --eps 0.031 --step-size 0.0078
        (PreAct ResNet-18 on uniform random 3x32x32 images with random labels, like
        `rampart bench-step --synthetic 3,32,32`; --resnet-width sets its first stage)
"""
import argparse
import gzip
import json
import os
import pathlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from twins import Cnn, PreActResNet18

p = argparse.ArgumentParser()
p.add_argument("--device", default="cpu")
p.add_argument("--steps", type=int, default=10)
p.add_argument("--batch-size", type=int, default=128)
p.add_argument("--arch", default="madry", choices=["madry", "strided", "preact-resnet18"])
p.add_argument("--resnet-width", type=int, default=64)
p.add_argument("--eps", type=float, default=0.3)
p.add_argument("--step-size", type=float, default=0.01)
p.add_argument("--conv", default=None)
p.add_argument("--hidden", type=int, default=None)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--iters", type=int, default=10)
# cuDNN runs convolutions in TF32 on tensor cores by default; Rampart computes in full fp32, so
# the comparison defaults to fp32 too, and --tf32 gives PyTorch's out-of-the-box figure.
p.add_argument("--tf32", action="store_true")
# Intra-op threads (PyTorch's default: one per physical core).
p.add_argument("--threads", type=int, default=None)
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
torch.backends.cudnn.allow_tf32 = a.tf32
torch.backends.cuda.matmul.allow_tf32 = a.tf32

dev = torch.device(a.device)
rng = np.random.default_rng(0)
if a.arch == "preact-resnet18":
    images = rng.random((a.batch_size * 4, 3, 32, 32), dtype=np.float32)
    labels = rng.integers(0, 10, len(images)).astype(np.int64)
    cifar = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2471, 0.2435, 0.2616]}
    model = PreActResNet18(base_width=a.resnet_width, normalization=cifar).to(dev)
else:
    data = pathlib.Path(os.environ.get("RAMPART_DATA", pathlib.Path(__file__).parent / "../../shared/data"))
    with gzip.open(data / "mnist/train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255
    with gzip.open(data / "mnist/train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    c1, c2 = map(int, (a.conv or {"madry": "32,64", "strided": "16,32"}[a.arch]).split(","))
    hidden = a.hidden or {"madry": 1024, "strided": 100}[a.arch]
    model = Cnn(conv_channels=(c1, c2), hidden=hidden, style=a.arch).to(dev)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
eps, alpha = a.eps, a.step_size


def pgd(x, y):
    model.eval()
    for p_ in model.parameters():
        p_.requires_grad_(False)
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(a.steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    for p_ in model.parameters():
        p_.requires_grad_(True)
    model.train()
    return x_adv


times = []
for i in range(a.warmup + a.iters):
    idx = rng.choice(len(labels), a.batch_size, replace=False)
    x = torch.from_numpy(images[idx]).to(dev)
    y = torch.from_numpy(labels[idx]).to(dev)
    t0 = time.perf_counter()
    x_in = pgd(x, y) if a.steps > 0 else x
    loss = F.cross_entropy(model(x_in), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    loss.item()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    if i >= a.warmup:
        times.append((time.perf_counter() - t0) * 1e3)
times.sort()
print(json.dumps({"framework": "pytorch " + torch.__version__, "device": a.device, "arch": a.arch, "threads": torch.get_num_threads(),
                  "batch_size": a.batch_size, "pgd_steps": a.steps, "median_ms": times[len(times) // 2],
                  "mean_ms": sum(times) / len(times), "iters": a.iters, "tf32": a.tf32}))
