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
if [ "${RESNET:-0}" = 1 ]; then
  data="${RAMPART_DATA:-.}" # synthetic images: no data read
  torch_args=(--arch preact-resnet18 --eps 0.031 --step-size 0.0078)
  rampart_args=("${torch_args[@]}" --synthetic 3,32,32)
  cpu_iters=(--warmup 1 --iters 2) # seconds per step on a CPU
else
  data="${RAMPART_DATA:?set RAMPART_DATA to a folder holding mnist/}"
fi
out="$(mktemp)"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-balanced}"
python3 bench/at_step_torch.py "${torch_args[@]}" --device cuda --warmup 5 --iters 30 | tee -a "$out"
"$bin" --data-dir "$data" --device wgpu bench-step "${rampart_args[@]}" --warmup 5 --iters 30 | tee -a "$out"
# The same step again after the kernels are compiled and tuned, and PyTorch once more, so that
# the two frameworks' numbers interleave.
"$bin" --data-dir "$data" --device wgpu bench-step "${rampart_args[@]}" --warmup 3 --iters 30 | tee -a "$out"
python3 bench/at_step_torch.py "${torch_args[@]}" --device cuda --warmup 5 --iters 30 | tee -a "$out"
"$bin" --data-dir "$data" --device cpu bench-step "${rampart_args[@]}" "${cpu_iters[@]}" | tee -a "$out"
python3 bench/at_step_torch.py "${torch_args[@]}" --device cpu "${cpu_iters[@]}" | tee -a "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for dev in ("cuda", "cpu"):
    torch = [r["median_ms"] for r in rows if r["framework"].startswith("pytorch") and r["device"] == dev]
    ours = [r["median_ms"] for r in rows if r["framework"] == "rampart" and r["device"] == ("wgpu" if dev == "cuda" else "cpu")]
    t, o = min(torch), ours[-1]
    print(f"{dev}: pytorch {t:.1f} ms/step, rampart {'wgpu' if dev == 'cuda' else 'cpu'} {o:.1f} ms/step -> {t / o:.2f}x PyTorch")
PY
