#!/usr/bin/env bash
# One PGD-10 adversarial-training step of PreAct ResNet-18 (3x32x32 synthetic images, batch 128,
# eps 8/255, step 2/255, Adam) in Rampart and in PyTorch (bench/at_step_torch.py, the twin from
# bench/twins.py) on this machine's CPU, one after the other; then a narrow network (width 8,
# batch 16) on Rampart's wgpu device — lavapipe, Vulkan on the CPU, where there is no GPU — beside
# Rampart's CPU backend and PyTorch on the same work. A GPU figure: RESNET=1 bash bench/gpu_at_step.sh.
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart
common=(--arch preact-resnet18 --eps 0.031 --step-size 0.0078 --steps 10)
full=(--batch-size 128 --warmup 1 --iters 2)
small=(--resnet-width 8 --batch-size 16 --warmup 1 --iters 3)
"$RAMPART_BIN" --device cpu bench-step "${common[@]}" "${full[@]}" --synthetic 3,32,32
python3 bench/at_step_torch.py "${common[@]}" "${full[@]}"
"$RAMPART_BIN" --device wgpu bench-step "${common[@]}" "${small[@]}" --synthetic 3,32,32
"$RAMPART_BIN" --device cpu bench-step "${common[@]}" "${small[@]}" --synthetic 3,32,32
python3 bench/at_step_torch.py "${common[@]}" "${small[@]}"
