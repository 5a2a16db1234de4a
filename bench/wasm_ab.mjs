// Two builds of the browser package side by side in one Node process (CPU backend): classify
// one image and PGD-20 on it, in blocks that alternate between the builds (ABBA order), each
// block timed by this process's CPU time; prints the median of the blocks for each build and
// their ratio. Interleaving in one process keeps the machine's drift out of the ratio.
//   node bench/wasm_ab.mjs PKG_A PKG_B BUNDLE SAMPLES_JSON     (bench/wasm_ab.sh sets it up)
// Optional: BLOCKS (30 per call).
import fs from "node:fs";
import path from "node:path";

const [pkgA, pkgB, bundle, samples] = process.argv.slice(2).map((p) => path.resolve(p));
if (!samples) throw new Error("usage: node bench/wasm_ab.mjs PKG_A PKG_B BUNDLE SAMPLES_JSON");
const BLOCKS = Number(process.env.BLOCKS || 30);

async function load(pkg) {
  // A query string makes a second import of the same file path a separate module.
  const m = await import(`${path.join(pkg, "rampart_web.js")}?${pkg}`);
  m.initSync({ module: fs.readFileSync(path.join(pkg, "rampart_web_bg.wasm")) });
  await m.init({ backend: "cpu" });
  await m.loadBundle(new Uint8Array(fs.readFileSync(bundle)));
  return m;
}
const builds = [await load(pkgA), await load(pkgB)];
const img = Float32Array.from(JSON.parse(fs.readFileSync(samples)).images[0]);
const calls = {
  classify: [100, (m) => m.classify(img)],
  pgd20: [3, (m) => m.attack({ pixels: img, method: "pgd", eps: 0.3, steps: 20, seed: 1 })],
};
// The two builds must compute the same thing.
const [a, b] = await Promise.all(builds.map((m) => m.classify(img)));
const diff = Math.max(...a.logits.map((v, i) => Math.abs(v - b.logits[i])));
if (!(diff <= 1e-4)) throw new Error(`the builds' logits differ by ${diff}`);
// Warm-up: V8 tiers hot wasm functions up after their first calls.
for (const m of builds) {
  for (let i = 0; i < 300; i++) await m.classify(img);
  for (let i = 0; i < 10; i++) await calls.pgd20[1](m);
}
const median = (v) => v.slice().sort((x, y) => x - y)[v.length >> 1];
const out = { max_logit_diff: diff };
for (const [name, [per, call]] of Object.entries(calls)) {
  const ms = [[], []];
  for (let blk = 0; blk < BLOCKS; blk++) {
    for (const k of blk % 2 ? [1, 0] : [0, 1]) {
      const t0 = process.cpuUsage();
      for (let i = 0; i < per; i++) await call(builds[k]);
      const t = process.cpuUsage(t0);
      ms[k].push((t.user + t.system) / 1000 / per);
    }
  }
  const [ma, mb] = ms.map(median);
  out[name] = { a_ms: +ma.toFixed(4), b_ms: +mb.toFixed(4), a_over_b: +(ma / mb).toFixed(3) };
}
console.log(JSON.stringify(out));
