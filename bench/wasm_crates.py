"""Code size of a wasm module per Rust crate, from its `name` section (function names).

    python3 bench/wasm_crates.py MODULE.wasm [--top 25]
Needs a build that keeps the name section: cargo's own rampart_web.wasm, before wasm-bindgen
strips it (bench/wasm_size.sh passes that file).
"""
import argparse
import collections
import re

p = argparse.ArgumentParser()
p.add_argument("wasm")
p.add_argument("--top", type=int, default=25)
a = p.parse_args()
b = open(a.wasm, "rb").read()


def leb(i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


sections, i = {}, 8
while i < len(b):
    sid = b[i]
    n, i = leb(i + 1)
    if sid == 0:
        ln, j = leb(i)
        sections[b[j:j + ln].decode()] = (j + ln, i + n)
    else:
        sections[sid] = (i, i + n)
    i += n
if "name" not in sections:
    raise SystemExit(f"{a.wasm} has no name section")

# Imported functions come first in the function index space.
imported, (i, _) = 0, sections[2]
count, i = leb(i)
for _ in range(count):
    for _ in range(2):  # module and field names
        ln, i = leb(i)
        i += ln
    kind = b[i]
    i += 1
    if kind == 0:  # function: type index
        imported += 1
        _, i = leb(i)
    elif kind == 1:  # table: element type, limits
        flags, i = leb(i + 1)
        _, i = leb(i)
        if flags & 1:
            _, i = leb(i)
    elif kind == 2:  # memory: limits
        flags, i = leb(i)
        _, i = leb(i)
        if flags & 1:
            _, i = leb(i)
    elif kind == 3:  # global: value type, mutability
        i += 2
    else:
        raise SystemExit(f"unknown import kind {kind}")

sizes, (i, _) = [], sections[10]
count, i = leb(i)
for _ in range(count):
    size, i = leb(i)
    sizes.append(size)
    i += size

names, (i, end) = {}, sections["name"]
while i < end:
    sub = b[i]
    n, i = leb(i + 1)
    start = i
    if sub == 1:  # function names
        count, i = leb(i)
        for _ in range(count):
            idx, i = leb(i)
            ln, i = leb(i)
            names[idx] = b[i:i + ln].decode("utf8", "replace")
            i += ln
    i = start + n

per_crate = collections.Counter()
for k, size in enumerate(sizes):
    # Mangled `_ZN<len><crate>…`, or `<impl …>` forms: the first identifier is the crate.
    name = re.sub(r"^_ZN\d+", "", names.get(k + imported, "?")).replace("_$LT$", "<")
    m = re.match(r"[<]*([A-Za-z_0-9]+)", name)
    per_crate[m.group(1) if m else "?"] += size
print(f"code section: {sum(sizes) / 1e6:.2f} MB in {len(sizes)} functions")
for crate, size in per_crate.most_common(a.top):
    print(f"{size / 1e6:7.2f} MB  {crate}")
