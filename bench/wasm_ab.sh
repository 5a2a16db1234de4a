#!/usr/bin/env bash
# The browser package built at a git revision (A, default HEAD) against the working tree (B),
# interleaved in one Node process: bench/wasm_ab.mjs (classify and PGD-20 on the browser tests'
# tiny CNN; CPU time per call, medians over alternating blocks, and A/B).
#   bash bench/wasm_ab.sh [REV]
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
REV="${1:-HEAD}"
TMP="$(mktemp -d)"
trap 'git worktree remove --force "$TMP/a" >/dev/null 2>&1; rm -rf "$TMP"' EXIT
build() { # source dir, target dir, output dir
  # A cdylib's file name carries no hash: a build of another tree in the same target dir
  # overwrites it while cargo may still count this tree's build fresh. Touching the crate makes
  # cargo link this tree's module again.
  touch "$1/web/src/lib.rs"
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo build -p rampart-web --profile web --target wasm32-unknown-unknown -q)
  wasm-bindgen --target web --remove-name-section --remove-producers-section --out-dir "$3" \
    "$2/wasm32-unknown-unknown/web/rampart_web.wasm"
}
git worktree add --detach "$TMP/a" "$REV" >/dev/null || { echo "no revision $REV" >&2; exit 1; }
# A target dir of its own, so that the two trees do not rebuild each other's crates.
build "$TMP/a" "$RAMPART_CACHE/target-ab" "$TMP/pkg-a"
build "$ROOT" "$CARGO_TARGET_DIR" "$TMP/pkg-b"
cmp -s "$TMP/pkg-a/rampart_web_bg.wasm" "$TMP/pkg-b/rampart_web_bg.wasm" &&
  echo "note: the two builds are byte for byte the same module" >&2
cargo build --release -p rampart -q
# The browser tests' tiny CNN and images.
mkdir -p "$TMP/fx"
FIXTURES_TEXT=0 bash scripts/browser-fixtures.sh "$TMP/fx" >/dev/null
echo "A: $(git rev-parse --short "$REV"), B: the working tree" >&2
node bench/wasm_ab.mjs "$TMP/pkg-a" "$TMP/pkg-b" "$TMP/fx/tiny.rampart" "$TMP/fx/samples.json"
