#!/usr/bin/env bash
# The PGD-10 adversarial-training step (Madry MNIST CNN, batch 128, Adam) on a machine with an
# NVIDIA GPU: Rampart over wgpu (Vulkan) and PyTorch over CUDA, in one run, plus both on the host
# CPU. Prints JSON lines and the ratios.
#   RAMPART_BIN=path/to/rampart RAMPART_DATA=dir-with-mnist bash bench/gpu_at_step.sh
# RESNET=1 times PreAct ResNet-18 instead (3x32x32 synthetic images, eps 8/255, step 2/255).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${RAMPART_BIN:?set RAMPART_BIN to a release build of rampart}"
torch_args=() rampart_args=() cpu_iters=(--warmup 2 --iters 5)
gpu_iters=(--warmup 5 --iters 30) gpu_again=(--warmup 3 --iters 30)
if [ "${RESNET:-0}" = 1 ]; then
  data="${RAMPART_DATA:-.}" # synthetic images: no data read
  torch_args=(--arch preact-resnet18 --eps 0.031 --step-size 0.0078)
  rampart_args=("${torch_args[@]}" --synthetic 3,32,32)
  cpu_iters=(--warmup 1 --iters 2) # seconds per step on a CPU
  # Fewer wgpu steps: one lease is 15 minutes, and ResNet-18 compiles and tunes many kernels.
  gpu_iters=(--warmup 3 --iters 10) gpu_again=(--warmup 1 --iters 10)
else
  data="${RAMPART_DATA:?set RAMPART_DATA to a folder holding mnist/}"
fi
out="$(mktemp)"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-balanced}"
torch_gpu() { python3 bench/at_step_torch.py "${torch_args[@]}" --device cuda --warmup 5 --iters 30 "$@" | tee -a "$out"; }
ours_gpu() { "$bin" --data-dir "$data" --device wgpu bench-step "${rampart_args[@]}" "$@" | tee -a "$out"; }
# PyTorch in full fp32 (as Rampart computes) and with its default TF32 convolutions.
torch_gpu
torch_gpu --tf32
ours_gpu "${gpu_iters[@]}"
# The same step again after the kernels are compiled and tuned, and PyTorch once more, so that
# the two frameworks' numbers interleave.
ours_gpu "${gpu_again[@]}"
torch_gpu
# Standard training (no attack) beside the PGD-10 step: how the cost splits.
ours_gpu --steps 0 "${gpu_iters[@]}"
torch_gpu --steps 0
"$bin" --data-dir "$data" --device cpu bench-step "${rampart_args[@]}" "${cpu_iters[@]}" | tee -a "$out"
python3 bench/at_step_torch.py "${torch_args[@]}" --device cpu "${cpu_iters[@]}" | tee -a "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def pick(framework, device, steps, tf32=False):
    return [r["median_ms"] for r in rows if r["framework"].startswith(framework) and r["device"] == device
            and r["pgd_steps"] == steps and r.get("tf32", False) == tf32]
for steps in sorted({r["pgd_steps"] for r in rows}, reverse=True):
    for dev, ours_dev, tf32 in (("cuda", "wgpu", False), ("cuda", "wgpu", True), ("cpu", "cpu", False)):
        torch, ours = pick("pytorch", dev, steps, tf32), pick("rampart", ours_dev, steps)
        if torch and ours:
            t, o = min(torch), ours[-1]
            print(f"PGD-{steps} {dev}{' tf32' if tf32 else ''}: pytorch {t:.1f} ms/step, "
                  f"rampart {ours_dev} {o:.1f} ms/step -> {t / o:.2f}x PyTorch")
PY
