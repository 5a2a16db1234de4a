#!/usr/bin/env bash
# Text pipeline speed on this machine's CPU, Rampart beside PyTorch / sentence-transformers:
# (1) embedding every original OSHA report (train + val) with MiniLM from an empty cache,
# (2) the default recipe's 30 epochs of MLP + RAT training from cached embeddings (the head's
# stage; bench/finetune_speed.sh times fine-tuning).
# Writes runs/text-speed.json and prints the ratios for docs/BENCHMARKS.md. Run it on an
# otherwise idle machine.
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
cargo build --release
mkdir -p runs
EMPTY="$(mktemp -d)"
trap 'rm -rf "$EMPTY"' EXIT
echo "== rampart: embed train + val from an empty cache"
"$RAMPART_BIN" text train --no-fine-tune --augment none --epochs 1 --cache-dir "$EMPTY" --out "$EMPTY/x.rampart-text" --json > runs/text-speed-embed.json
echo "== rampart: the default recipe's head (frozen encoder) from cached embeddings"
"$RAMPART_BIN" text train --no-fine-tune --out "$EMPTY/y.rampart-text" --json > runs/text-speed-train.json
echo "== PyTorch"
python3 bench/text_speed_torch.py --json runs/text-speed-torch.json
python3 - <<'PY'
import json
e = json.load(open("runs/text-speed-embed.json"))["timing"]
t = json.load(open("runs/text-speed-train.json"))["timing"]
p = json.load(open("runs/text-speed-torch.json"))
out = {
    "reports_embedded": e["reports_embedded"], "rampart_embed_s": e["embed_seconds"],
    "torch_embed_s": p["embed_s"], "embed_speed_vs_torch": p["embed_s"] / e["embed_seconds"],
    "train_samples": t["train_samples"], "rampart_train_s": t["train_seconds"],
    "torch_train_s": p["train_s"], "train_speed_vs_torch": p["train_s"] / t["train_seconds"],
    "torch_threads": p["threads"], "torch_version": p["torch_version"],
}
json.dump(out, open("runs/text-speed.json", "w"), indent=1)
print(f"embed {out['reports_embedded']} reports: rampart {out['rampart_embed_s']:.1f} s, "
      f"PyTorch {out['torch_embed_s']:.1f} s -> {out['embed_speed_vs_torch']:.2f}x PyTorch speed")
print(f"train {out['train_samples']} samples x 30 epochs: rampart {out['rampart_train_s']:.1f} s, "
      f"PyTorch {out['torch_train_s']:.1f} s -> {out['train_speed_vs_torch']:.2f}x PyTorch speed")
PY
