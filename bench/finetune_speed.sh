#!/usr/bin/env bash
# Fine-tuning speed on this machine's CPU, Rampart beside PyTorch: the frozen layers' token
# vectors of every training report (train + ABEX), then one training epoch of the top LAYERS
# (default 1) with the head (bench/finetune_speed_torch.py says what exactly). Embeddings come
# from the cache (the head's stage is not timed here; bench/text_speed.sh times it). Writes
# runs/finetune-speed.json and prints the ratios. Run it on an otherwise idle machine.
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
LAYERS="${LAYERS:-1}"
cargo build --release
mkdir -p runs
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "== rampart: text train --fine-tune --fine-tune-layers $LAYERS --fine-tune-epochs 1"
"$RAMPART_BIN" text train --fine-tune --fine-tune-layers "$LAYERS" --fine-tune-epochs 1 \
  --out "$TMP/t.rampart-text" --json > runs/finetune-speed-rampart.json
echo "== PyTorch"
python3 bench/finetune_speed_torch.py --layers "$LAYERS" --json runs/finetune-speed-torch.json
python3 - <<'PY'
import json
r = json.load(open("runs/finetune-speed-rampart.json"))["timing"]
p = json.load(open("runs/finetune-speed-torch.json"))
out = {
    "layers": p["layers"], "reports": p["reports"], "tokens": p["tokens"],
    "rampart_states_s": r["fine_tune_train_states_seconds"], "torch_states_s": p["states_s"],
    "rampart_epoch_s": r["fine_tune_epoch_seconds"][0], "torch_epoch_s": p["epoch_s"],
    "torch_threads": p["threads"], "torch_version": p["torch_version"],
}
out["states_speed_vs_torch"] = out["torch_states_s"] / out["rampart_states_s"]
out["epoch_speed_vs_torch"] = out["torch_epoch_s"] / out["rampart_epoch_s"]
json.dump(out, open("runs/finetune-speed.json", "w"), indent=1)
print(f"frozen layers' token vectors, {out['reports']} reports: rampart {out['rampart_states_s']:.1f} s, "
      f"PyTorch {out['torch_states_s']:.1f} s -> {out['states_speed_vs_torch']:.2f}x PyTorch speed")
print(f"one fine-tuning epoch (top {out['layers']} layers + head, forward + backward): rampart "
      f"{out['rampart_epoch_s']:.1f} s, PyTorch {out['torch_epoch_s']:.1f} s -> "
      f"{out['epoch_speed_vs_torch']:.2f}x PyTorch speed")
PY
