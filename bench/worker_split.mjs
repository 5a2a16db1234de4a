// Where Rampart's browser classify spends its time (CPU backend, headless Chromium): the call
// through www/rampart.js (worker round trip included), a call the module rejects after its
// length check (about the round trip alone), and classify called on pkg/rampart_web.js directly, on the page's thread
// and inside a bare module worker. Medians of 200 calls after 30 warm-up calls; performance.now()
// ticks in 0.1 ms steps here (no cross-origin isolation).
//   FIXTURES=dir node bench/worker_split.mjs     (dir: tiny.rampart and samples.json, as written
//   by scripts/browser-fixtures.sh; needs the built www/ and tests/browser's packages)
import { createRequire } from "node:module";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { COMMON, NO_WEBGPU } from "../tests/browser/chromium.mjs";
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
// A page that stops answering must not hang the script.
setTimeout(() => { console.error("worker_split: timed out after 180 s"); process.exit(1); }, 180_000).unref();
const require = createRequire(path.join(ROOT, "tests/browser/package.json"));
const { chromium } = require("playwright-core");
const FIXTURES = process.env.FIXTURES && path.resolve(process.env.FIXTURES);
if (!FIXTURES) throw new Error("set FIXTURES (see the top of this file)");
const WWW = path.join(ROOT, "www");
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x").pathname;
  if (url === "/blank.html") { res.writeHead(200, { "content-type": "text/html" }); return res.end("<!doctype html><title>b</title>"); }
  const file = url.startsWith("/fixtures/") ? path.join(FIXTURES, path.basename(url)) : path.join(WWW, url);
  if (!file.startsWith(FIXTURES + path.sep) && !file.startsWith(WWW + path.sep)) { res.writeHead(404); return res.end(); }
  fs.readFile(file, (err, data) => { if (err) { res.writeHead(404); return res.end(); } res.writeHead(200, { "content-type": types[path.extname(file)] || "application/octet-stream" }); res.end(data); });
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const BASE = `http://127.0.0.1:${server.address().port}`;
const samples = JSON.parse(fs.readFileSync(path.join(FIXTURES, "samples.json"), "utf8"));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: [...COMMON, ...NO_WEBGPU] });
let out;
try {
  const page = await browser.newPage();
  await page.goto(`${BASE}/blank.html`);
  out = await page.evaluate(async (img) => {
    const med = (v) => { const s = [...v].sort((a, b) => a - b); return s[s.length >> 1]; };
    const time = async (n, f) => { const t = []; for (let i = 0; i < n; i++) { const t0 = performance.now(); await f(); t.push(performance.now() - t0); } return med(t); };
    const r = await import("/rampart.js");
    await r.default(); await r.init({ backend: "cpu" }); await r.loadBundle("/fixtures/tiny.rampart");
    const x = Float32Array.from(img);
    for (let i = 0; i < 30; i++) await r.classify(x);
    for (let i = 0; i < 10; i++) await r.classify(new Float32Array(3)).catch(() => 0);
    const res = { rampart_js_rejected_call: await time(200, () => r.classify(new Float32Array(3)).catch(() => 0)), rampart_js_classify: await time(200, () => r.classify(Float32Array.from(img))) };
    const m = await import("/pkg/rampart_web.js");
    await m.default({ module_or_path: "/pkg/rampart_web_bg.wasm" });
    await m.init({ backend: "cpu" });
    const bytes = new Uint8Array(await (await fetch("/fixtures/tiny.rampart")).arrayBuffer());
    await m.loadBundle(bytes);
    for (let i = 0; i < 30; i++) await m.classify(x);
    res.page_thread_classify = await time(200, () => m.classify(x));
    const base = location.origin;
    const code = `import init, * as m from "${base}/pkg/rampart_web.js";
      onmessage = async ({ data }) => { try {
        await init({ module_or_path: "${base}/pkg/rampart_web_bg.wasm" });
        await m.init({ backend: "cpu" });
        const bytes = new Uint8Array(await (await fetch("${base}/fixtures/tiny.rampart")).arrayBuffer());
        await m.loadBundle(bytes);
        const x = Float32Array.from(data);
        for (let i = 0; i < 30; i++) await m.classify(x);
        const t = [];
        for (let i = 0; i < 200; i++) { const t0 = performance.now(); await m.classify(x); t.push(performance.now() - t0); }
        t.sort((a, b) => a - b);
        postMessage(t[100]);
      } catch (e) { postMessage({ error: String(e) }); } };`;
    const w = new Worker(URL.createObjectURL(new Blob([code], { type: "text/javascript" })), { type: "module" });
    res.bare_worker_classify = await new Promise((resolve, reject) => { w.onmessage = (e) => (e.data?.error ? reject(new Error(e.data.error)) : resolve(e.data)); w.onerror = (e) => reject(String(e.message)); w.postMessage(img); });
    return res;
  }, samples.images[0]);
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(out));
