// Per-call latency of the browser build's CPU backend, in Node (no browser, no GPU): classify one
// image, and PGD attacks of 1, 20 and 40 steps, each repeated; with a text bundle, also
// classifyReport (MiniLM + head, compute-bound); prints one JSON object (medians, ms).
//   node bench/wasm_calls.mjs PKG_DIR BUNDLE SAMPLES_JSON [TEXT_BUNDLE REPORTS_JSON MINILM_DIR]
// (bench/wasm_calls.sh sets it up)
import fs from "node:fs";
import path from "node:path";

const [pkg, bundle, samples, textBundle, reports, minilm] = process.argv.slice(2).map((p) => path.resolve(p));
const m = await import(path.join(pkg, "rampart_web.js"));
m.initSync({ module: fs.readFileSync(path.join(pkg, "rampart_web_bg.wasm")) });
await m.init({ backend: "cpu" });
await m.loadBundle(new Uint8Array(fs.readFileSync(bundle)));
const img = Float32Array.from(JSON.parse(fs.readFileSync(samples)).images[0]);

async function median(n, f) {
  const t = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await f();
    t.push(performance.now() - t0);
  }
  return t.sort((a, b) => a - b)[n >> 1];
}
const pgd = (steps) => m.attack({ pixels: img, method: "pgd", eps: 0.3, steps, seed: 1 });
// Warm-up: V8 runs wasm on its baseline compiler first and optimises hot functions later.
for (let i = 0; i < 10; i++) await pgd(20);
for (let i = 0; i < 20; i++) await m.classify(img);
const out = { classify_ms: await median(21, () => m.classify(img)) };
for (const steps of [1, 20, 40]) out[`pgd${steps}_ms`] = await median(7, () => pgd(steps));
if (textBundle) {
  const bytes = (f) => new Uint8Array(fs.readFileSync(f));
  await m.loadTextModel({
    bundle: bytes(textBundle), config: bytes(path.join(minilm, "config.json")),
    weights: bytes(path.join(minilm, "model.safetensors")), tokenizer: bytes(path.join(minilm, "tokenizer.json")),
  });
  const text = JSON.parse(fs.readFileSync(reports))[0].text;
  for (let i = 0; i < 3; i++) await m.classifyReport(text);
  out.classify_report_ms = await median(7, () => m.classifyReport(text));
}
console.log(JSON.stringify(out));
