#!/usr/bin/env bash
# Runs every fuzz target in core/tests/fuzz.rs (bundles, text bundles, IDX, gzip, CIFAR
# records, OSHA JSON, augmentation JSONL, the embedding cache, tokenizer input, the augment
# journal, text checkpoints, and the browser API's option objects and bundles in Chromium) for
# MINUTES minutes each (default 10) and prints per target the
# inputs tried, the wall time and the peak memory. LANES=n runs n targets at once (each is one
# thread). A panic saves its input under core/tests/fuzz_corpus/ and fails the run; those
# files are replayed by every later run, the test suite included.
#   [LANES=2] bash bench/fuzz.sh [MINUTES]
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
minutes="${1:-10}"
lanes="${LANES:-1}"
cargo test --release -p rampart-core --test fuzz --no-run -q 2>/dev/null
bin=$(ls -t "$CARGO_TARGET_DIR"/release/deps/fuzz-* | grep -v '\.d$' | head -1)
mkdir -p runs
stamp="$(date +%Y%m%d-%H%M%S)"
run_one() {
  local t="$1" log="runs/fuzz-$stamp-$1.log"
  /usr/bin/time -f "$t: %e s wall, peak %M KB" env RAMPART_FUZZ_SECONDS=$((minutes * 60)) \
    "$bin" --exact "$t" --nocapture --test-threads 1 >"$log" 2>&1
  local rc=$?
  grep -E "^$t: |inputs in|panicked|skip:" "$log" | tail -n 3
  return $rc
}
export -f run_one
export bin minutes stamp
"$bin" --list 2>/dev/null | sed -n 's/: test$//p' | xargs -P "$lanes" -I{} bash -c 'run_one {}'
status=$?
# The browser API (option objects, resealed bundles) in headless Chromium, for as long.
if [ -z "${NO_BROWSER:-}" ]; then
  bash scripts/build-web.sh >/dev/null 2>&1
  fixtures="$(mktemp -d)"; trap 'rm -rf "$fixtures"' EXIT
  bash scripts/browser-fixtures.sh "$fixtures" >/dev/null 2>&1
  (cd tests/browser && RAMPART_BIN="$RAMPART_BIN" FIXTURES="$fixtures" ONLY='^fuzz' \
    RAMPART_BROWSER_FUZZ_SECONDS=$((minutes * 60)) node run.mjs) >"runs/fuzz-$stamp-browser.log" 2>&1 || status=1
  grep -vE '\[page\]' "runs/fuzz-$stamp-browser.log" | tail -n 3
fi
echo "logs: runs/fuzz-$stamp-*.log"
exit $status
