#!/usr/bin/env bash
# Runs every fuzz target in core/tests/fuzz.rs (bundles, text bundles, IDX, gzip, CIFAR
# records, OSHA JSON, augmentation JSONL, the embedding cache, tokenizer input) for MINUTES
# minutes each (default 10), one after the other, and prints per target the inputs tried,
# the wall time and the peak memory. A panic saves its input under core/tests/fuzz_corpus/
# and fails the run; those files are replayed by every later run, the test suite included.
#   bash bench/fuzz.sh [MINUTES]
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
minutes="${1:-10}"
cargo test --release -p rampart-core --test fuzz --no-run -q 2>/dev/null
bin=$(ls -t "$CARGO_TARGET_DIR"/release/deps/fuzz-* | grep -v '\.d$' | head -1)
mkdir -p runs
log="runs/fuzz-$(date +%Y%m%d-%H%M%S).log"
status=0
for t in $("$bin" --list 2>/dev/null | sed -n 's/: test$//p'); do
  if ! /usr/bin/time -f "$t: %e s wall, peak %M KB" env RAMPART_FUZZ_SECONDS=$((minutes * 60)) \
      "$bin" --exact "$t" --nocapture --test-threads 1 >>"$log" 2>&1; then
    status=1
  fi
  grep -E "^$t: |inputs in|panicked|skip:" "$log" | tail -n 3
done
echo "log: $log"
exit $status
