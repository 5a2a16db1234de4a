#!/usr/bin/env bash
# One PGD-10 adversarial-training step (batch 128, Adam) in Rampart (`rampart bench-step`) and
# in PyTorch (bench/at_step_torch.py, the twin from bench/twins.py), interleaved on one machine:
# run k times Rampart, then PyTorch, for each architecture and thread count, so that the
# machine's drift falls on both alike. Prints each run's ratio and, per architecture and thread
# count, the median, min and max of the ratios (PyTorch time / Rampart time: above 1, Rampart
# is faster). Rows are kept in runs/at-step-<time>.jsonl.
#
#   bash bench/at_step.sh                     # Madry CNN, strided CNN, PreAct ResNet-18; 7 runs
#   ARCHS=madry RUNS=3 bash bench/at_step.sh  # a subset
#   THREADS="1 2" bash bench/at_step.sh       # thread scaling (RAYON_NUM_THREADS / torch threads)
#   BURN=1 bash bench/at_step.sh              # also Rampart on Burn's own operations
#   WGPU=1 bash bench/at_step.sh              # also Rampart on wgpu
#   TORCH_TUNED=1 bash bench/at_step.sh       # also PyTorch with the allocator setting that
#                                             # Rampart's CLI makes (kernels::reuse_freed_memory)
#
# Madry and strided CNNs: real MNIST batches, ε 0.3, step 0.01, median of 10 steps after 3
# warm-up steps. PreAct ResNet-18 (width 64): synthetic 3×32×32 images, ε 8/255, step 2/255,
# median of 2 steps after 1 warm-up step (a step takes tens of seconds on two cores).
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart -q
ARCHS="${ARCHS:-madry strided preact-resnet18}"
RUNS="${RUNS:-7}"
THREADS="${THREADS:-$(nproc)}"
mkdir -p runs
out="runs/at-step-$(date +%Y%m%d-%H%M%S).jsonl"

args_for() {
  case "$1" in
    madry) echo "" ;;
    strided) echo "--arch strided" ;;
    preact-resnet18) echo "--arch preact-resnet18 --eps 0.031 --step-size 0.0078 --warmup 1 --iters 2" ;;
    *) echo "unknown architecture $1" >&2; exit 2 ;;
  esac
}

# glibc's malloc told what Rampart's CLI tells it at start: keep freed memory for reuse.
TUNED="glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"
# Rampart's own rows: the CLI's setting unless RAMPART_ALLOCATOR=default turns it off.
ralloc=reuse
[ "${RAMPART_ALLOCATOR:-}" = default ] && ralloc=default

# Appends one JSON row, tagged with the architecture, thread count, run and allocator setting
# ("reuse": freed memory kept for reuse, as Rampart's CLI sets it; "default": glibc's).
row() {
  local arch="$1" threads="$2" run="$3" alloc="$4"; shift 4
  "$@" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r.update(tag=sys.argv[1], threads=int(sys.argv[2]), run=int(sys.argv[3]), allocator=sys.argv[4]); print(json.dumps(r))' \
    "$arch" "$threads" "$run" "$alloc" | tee -a "$out"
}

for arch in $ARCHS; do
  a=$(args_for "$arch")
  synthetic=""
  [ "$arch" = preact-resnet18 ] && synthetic="--synthetic 3,32,32"
  for t in $THREADS; do
    for run in $(seq 1 "$RUNS"); do
      # shellcheck disable=SC2086
      row "$arch" "$t" "$run" "$ralloc" env RAYON_NUM_THREADS="$t" "$RAMPART_BIN" --device cpu bench-step $a $synthetic
      if [ -n "${BURN:-}" ]; then
        # shellcheck disable=SC2086
        row "$arch" "$t" "$run" "$ralloc" env RAYON_NUM_THREADS="$t" RAMPART_KERNELS=burn "$RAMPART_BIN" --device cpu bench-step $a $synthetic
      fi
      if [ -n "${WGPU:-}" ]; then
        # shellcheck disable=SC2086
        row "$arch" "$t" "$run" "$ralloc" "$RAMPART_BIN" --device wgpu bench-step $a $synthetic --warmup 5
      fi
      # shellcheck disable=SC2086
      row "$arch" "$t" "$run" default python3 bench/at_step_torch.py --device cpu --threads "$t" $a
      if [ -n "${TORCH_TUNED:-}" ]; then
        # shellcheck disable=SC2086
        row "$arch" "$t" "$run" reuse env GLIBC_TUNABLES="$TUNED" python3 bench/at_step_torch.py --device cpu --threads "$t" $a
      fi
    done
  done
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = sorted({(r["tag"], r["threads"]) for r in rows}, key=lambda k: (k[0], k[1]))
print(f"\nrows: {sys.argv[1]}")
print("| architecture | threads | Rampart | PyTorch | PyTorch / Rampart, median (min–max) of runs |")
print("| --- | ---: | --- | ---: | --- |")
def ratio_line(tag, threads, label, ours, torch):
    ratios = [torch[k] / ours[k] for k in sorted(ours) if k in torch]
    if not ratios:
        return
    print(f"| {tag} | {threads} | {label}: {statistics.median(ours.values()):.0f} ms "
          f"| {statistics.median(torch.values()):.0f} ms | **{statistics.median(ratios):.2f}×** "
          f"({min(ratios):.2f}–{max(ratios):.2f}; {', '.join(f'{x:.2f}' for x in ratios)}) |")
for tag, threads in keys:
    sel = [r for r in rows if r["tag"] == tag and r["threads"] == threads]
    # Rows from before the allocator tag are glibc's defaults for PyTorch.
    torch = {r["run"]: r["median_ms"] for r in sel if r["framework"].startswith("pytorch")
             and r.get("allocator", "default") == "default"}
    tuned = {r["run"]: r["median_ms"] for r in sel if r["framework"].startswith("pytorch")
             and r.get("allocator") == "reuse"}
    variants = sorted({(r["device"], r.get("kernels", ""), r.get("allocator", "")) for r in sel
                       if r["framework"] == "rampart"})
    for device, kernels, alloc in variants:
        ours = {r["run"]: r["median_ms"] for r in sel if r["framework"] == "rampart"
                and r["device"] == device and r.get("kernels", "") == kernels
                and r.get("allocator", "") == alloc}
        label = f"{device}" + (f", {kernels} kernels" if device == "cpu" else "")
        label += ", glibc's default allocator" if alloc == "default" else ""
        ratio_line(tag, threads, label, ours, torch)
        ratio_line(tag, threads, label + " (against PyTorch with the same allocator setting)", ours, tuned)
PY
