#!/usr/bin/env bash
# Installs what building, the demo and the tests need; skips what is already there.
source "$(dirname "$0")/env.sh"
cd "$ROOT"

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
# lavapipe: Vulkan on the CPU, for the wgpu backend on machines without a GPU.
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || need_apt+=(mesa-vulkan-drivers libvulkan1)
command -v node >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION\$"; then
  echo "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: a locked dependency of the CLI is missing from the registry.
  cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --root "$RAMPART_CACHE" -q
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi

if [ ! -f "$RAMPART_DATA/mnist/t10k-images-idx3-ubyte.gz" ] || [ ! -f "$RAMPART_DATA/osha/train.json" ]; then
  bash scripts/fetch-data.sh
fi
