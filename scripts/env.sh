# Shared settings, sourced by the other scripts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Builds are slow on small machines: keep the target dir (and tools) outside the clone so
# that fresh clones reuse them.
export RAMPART_CACHE="${RAMPART_CACHE:-$HOME/.cache/rampart}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RAMPART_CACHE/target}"
export PATH="$RAMPART_CACHE/bin:$HOME/.cargo/bin:$PATH"
export RAMPART_DATA="${RAMPART_DATA:-$ROOT/../shared/data}"
RAMPART_BIN="${RAMPART_BIN:-$CARGO_TARGET_DIR/release/rampart}"
# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION="$(grep -A1 '^name = "wasm-bindgen"$' "$ROOT/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')"
