#!/usr/bin/env bash
# One PGD-10 adversarial-training step (Madry MNIST CNN, batch 128) in Rampart (CPU with its
# host kernels, CPU with Burn's own operations (RAMPART_KERNELS=burn), and wgpu with --wgpu) and
# in PyTorch, in one run on one machine; prints JSON lines and the ratios.
#   bash bench/at_step.sh [--wgpu]
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart -q
out="$(mktemp)"
"$RAMPART_BIN" bench-step --device cpu | tee -a "$out"
RAMPART_KERNELS=burn "$RAMPART_BIN" bench-step --device cpu | tee -a "$out"
if [ "${1:-}" = "--wgpu" ]; then "$RAMPART_BIN" --device wgpu bench-step --warmup 5 | tee -a "$out"; fi
python3 bench/at_step_torch.py --device cpu | tee -a "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
torch_ms = next(r["median_ms"] for r in rows if r["framework"].startswith("pytorch"))
for r in rows:
    if r["framework"] == "rampart":
        print(f"rampart {r['device']} ({r['kernels']} kernels): {r['median_ms']:.0f} ms/step, {torch_ms / r['median_ms']:.2f}x PyTorch CPU ({torch_ms:.0f} ms)")
PY
