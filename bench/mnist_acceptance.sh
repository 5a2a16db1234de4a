#!/usr/bin/env bash
# The MNIST figures of docs/RESULTS.md: a standard Madry CNN and a robust strided CNN, trained
# and evaluated with the CLI. Writes bundles and JSON reports under runs/ (gitignored).
# Clean accuracy is on all 10,000 test images; PGD on the standard model on the first
# EVAL_LIMIT (default 1,000); on the robust one on all ROBUST_EVAL_LIMIT (default 10,000), on
# the first 1,000 with 1 and 10 restarts (RESTART_LIMIT, default 1,000), for time on 2 cores.
#   bash bench/mnist_acceptance.sh standard|robust|robust-fgsm|all
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release -p rampart -q
mkdir -p runs
what="${1:-all}"

if [ "$what" = standard ] || [ "$what" = all ]; then
  /usr/bin/time -f "%e s wall" "$RAMPART_BIN" train --overwrite --dataset mnist --method standard --epochs 3 \
    --out runs/mnist-standard.rampart
  "$RAMPART_BIN" eval --bundle runs/mnist-standard.rampart --attack pgd --eps 0.3 --steps 40 \
    --step-size 0.01 --limit "${EVAL_LIMIT:-1000}" --out runs/mnist-standard-pgd40.json
fi

if [ "$what" = robust ] || [ "$what" = all ]; then
  # PGD-AT (10 steps of 0.075, random start) on Wong et al.'s strided network, eps ramped
  # over the first two epochs, learning rate /10 after epoch 12.
  /usr/bin/time -f "%e s wall" "$RAMPART_BIN" train --overwrite --dataset mnist --arch strided --method pgd-at \
    --eps 0.3 --steps 10 --step-size 0.075 --epochs 15 --eps-ramp 2 --lr 1e-3 --milestones 12 \
    --out runs/mnist-strided-pgd.rampart
  "$RAMPART_BIN" eval --bundle runs/mnist-strided-pgd.rampart --attack pgd --eps 0.3 --steps 40 \
    --step-size 0.01 --limit "${ROBUST_EVAL_LIMIT:-10000}" --out runs/strided-pgd40.json
  "$RAMPART_BIN" eval --bundle runs/mnist-strided-pgd.rampart --attack pgd --eps 0.3 --steps 40 \
    --step-size 0.01 --limit "${RESTART_LIMIT:-1000}" --out runs/strided-pgd40-first1000.json
  "$RAMPART_BIN" eval --bundle runs/mnist-strided-pgd.rampart --attack pgd --eps 0.3 --steps 40 \
    --step-size 0.01 --restarts 10 --limit "${RESTART_LIMIT:-1000}" --out runs/strided-pgd40-r10.json
  # Stronger checks on the first 1,000: 100 steps with the CW margin loss, and an eps sweep.
  "$RAMPART_BIN" eval --bundle runs/mnist-strided-pgd.rampart --attack pgd --eps 0.3 --steps 100 \
    --step-size 0.01 --loss cw --limit 1000 --out runs/strided-pgd100-cw.json
  "$RAMPART_BIN" eval --bundle runs/mnist-strided-pgd.rampart --attack pgd --eps 0.1,0.2,0.3,0.4,0.5 \
    --steps 40 --step-size 0.025 --limit 1000 --out runs/strided-sweep.json
fi

if [ "$what" = robust-fgsm ]; then
  # The earlier negative result: FGSM with a random start ("fast AT") on Madry's network.
  /usr/bin/time -f "%e s wall" "$RAMPART_BIN" train --overwrite --dataset mnist --method fgsm-rs --eps 0.3 --alpha 0.375 \
    --epochs "${ROBUST_EPOCHS:-9}" --eps-ramp 2 --lr 1e-3 --milestones 7 --out runs/mnist-robust.rampart
  "$RAMPART_BIN" eval --bundle runs/mnist-robust.rampart --attack pgd --eps 0.3 --steps 40 \
    --step-size 0.01 --limit "${EVAL_LIMIT:-1000}" --out runs/mnist-robust-pgd40.json
fi
