// Rampart against TensorFlow.js on the same tiny CNN in headless Chromium: one page without
// WebGPU (Rampart's CPU backend against TF.js's wasm backend, both one thread) and one with
// WebGPU on SwiftShader (both on WebGPU). Times classify and PGD-20 (first call, then the
// median of later calls), checks that the three agree, and sizes what each downloads. The
// TF.js side, run in the page, is bench/tfjs_page.js. Rampart runs twice: through rampart.js,
// whose calls go to a Web Worker and back, and as pkg/rampart_web.js imported on the page's
// own thread, where TF.js runs (the same module, without the round trip).
//
//   FIXTURES=dir node bench/tfjs_compare.mjs        (or: bash bench/browser_vs_tfjs.sh)
//
// FIXTURES holds tiny.rampart, samples.json (`rampart samples`) and tiny.safetensors (`rampart
// export` of tiny.rampart). Packages come from tests/browser (`npm ci` there). Optional:
// CLASSIFY_RUNS (200), PGD_RUNS (9), SIDES (cpu,webgpu), CHROMIUM, WWW (the built www/), OUT
// (also write the JSON there), VERBOSE (page console).
// Prints one JSON object, then markdown tables; exits non-zero when a check fails.
import { createRequire } from "node:module";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import zlib from "node:zlib";
import { COMMON, WEBGPU, NO_WEBGPU } from "../tests/browser/chromium.mjs";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
// The browser tests' packages: one package.json and lock for both.
const require = createRequire(path.join(ROOT, "tests/browser/package.json"));
const { chromium } = require("playwright-core");
const distOf = (pkg) => path.join(path.dirname(require.resolve(`${pkg}/package.json`)), "dist");
const wasmDist = distOf("@tensorflow/tfjs-backend-wasm");
// The es2017 builds: what a page for current browsers would ship (the plain .min.js is ES5).
// The whole tf bundle, not tf-core: tf-core's bundle registers no gradients, and tf.grad needs
// them (the bundle's layers, converter and webgl backend go unused here).
const TFJS = {
  "tf.js": path.join(distOf("@tensorflow/tfjs"), "tf.es2017.min.js"),
  "tf-backend-wasm.js": path.join(wasmDist, "tf-backend-wasm.es2017.min.js"),
  "tf-backend-webgpu.js": path.join(distOf("@tensorflow/tfjs-backend-webgpu"), "tf-backend-webgpu.es2017.min.js"),
};
for (const f of fs.readdirSync(wasmDist)) if (f.endsWith(".wasm")) TFJS[f] = path.join(wasmDist, f);

const FIXTURES = process.env.FIXTURES && path.resolve(process.env.FIXTURES);
if (!FIXTURES) throw new Error("set FIXTURES (see the top of this file)");
const WWW = path.resolve(process.env.WWW || path.join(ROOT, "www"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CLASSIFY_RUNS = Number(process.env.CLASSIFY_RUNS || 200);
const CLASSIFY_BLOCK = 10;
if (!(CLASSIFY_RUNS > 0 && CLASSIFY_RUNS % CLASSIFY_BLOCK === 0)) throw new Error(`CLASSIFY_RUNS must be a positive multiple of ${CLASSIFY_BLOCK}`);
const PGD_RUNS = Number(process.env.PGD_RUNS || 9);
const SIDES = (process.env.SIDES || "cpu,webgpu").split(",");
const TOL = 1e-4;
const EPS = 0.3;
const STEPS = 20;
// Rampart's default PGD step (core/src/attack/pgd.rs, PgdConfig::new): 2.5·ε/steps, formed in
// f32 as ε · (2.5/steps).
const STEP_SIZE = Math.fround(Math.fround(EPS) * Math.fround(2.5 / STEPS));
for (const f of ["tiny.rampart", "samples.json", "tiny.safetensors"]) {
  if (!fs.existsSync(path.join(FIXTURES, f))) throw new Error(`${FIXTURES}/${f} is missing`);
}
for (const f of ["rampart.js", "rampart-worker.js", "pkg/rampart_web.js"]) {
  if (!fs.existsSync(path.join(WWW, f))) throw new Error(`${WWW}/${f} is missing: build the web package (scripts/build-web.sh)`);
}

// Every file served, by URL, so that sizes count what the pages actually loaded.
const served = new Map();
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x").pathname;
  // No CSP, no COOP/COEP: the page is not cross-origin isolated, so TF.js's wasm stays on one thread.
  if (url === "/blank.html") { res.writeHead(200, { "content-type": "text/html" }); return res.end("<!doctype html><title>blank</title>"); }
  let file;
  if (url.startsWith("/tfjs/")) file = TFJS[url.slice(6)];
  else if (url === "/bench/tfjs_page.js") file = path.join(ROOT, "bench/tfjs_page.js");
  else if (url.startsWith("/fixtures/")) file = path.join(FIXTURES, path.basename(url));
  else {
    file = path.join(WWW, url);
    if (!file.startsWith(WWW + path.sep)) file = null;
  }
  if (!file) { res.writeHead(404); return res.end("not found"); }
  fs.readFile(file, (err, data) => {
    if (err) { res.writeHead(404); return res.end("not found"); }
    served.set(url, file);
    res.writeHead(200, { "content-type": types[path.extname(file)] || "application/octet-stream" });
    res.end(data);
  });
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const BASE = `http://127.0.0.1:${server.address().port}`;


const samples = JSON.parse(fs.readFileSync(path.join(FIXTURES, "samples.json"), "utf8"));
const assert = (cond, msg) => { if (!cond) throw new Error(msg); };
const median = (v) => { const s = [...v].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

// Adversarial images must stay in [0, 1] and in the ε-ball (f32 arithmetic: a little slack).
function checkAttack(who, adv, x) {
  assert(adv.length === x.length, `${who}: ${adv.length} adversarial values for ${x.length} pixels`);
  adv.forEach((v, i) => {
    assert(v >= 0 && v <= 1, `${who}: adversarial pixel ${i} = ${v} is outside [0, 1]`);
    assert(Math.abs(v - x[i]) <= EPS + 1e-6, `${who}: pixel ${i} moved by ${Math.abs(v - x[i])} > ε = ${EPS}`);
  });
}

async function side(kind) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...COMMON, ...(kind === "cpu" ? NO_WEBGPU : WEBGPU)] });
  const tfBackend = kind === "cpu" ? "wasm" : "webgpu";
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (process.env.VERBOSE) console.error("  [page]", m.text()); });
    await page.goto(`${BASE}/blank.html`);
    served.clear();
    const adapter = kind === "webgpu" ? await page.evaluate(async () => {
      const a = await navigator.gpu?.requestAdapter();
      return a && { vendor: a.info.vendor, architecture: a.info.architecture, description: a.info.description, fallback: a.info.isFallbackAdapter };
    }) : undefined;
    if (kind === "webgpu") assert(adapter, "no WebGPU adapter in the WebGPU page");

    // Start-up: scripts, wasm, backend and weights, each side in turn.
    const rampart = await page.evaluate(async (backend) => {
      const t0 = performance.now();
      window.rampart = await import("/rampart.js");
      await window.rampart.default();
      const init = await window.rampart.init({ backend });
      await window.rampart.loadBundle("/fixtures/tiny.rampart");
      return { ...init, startup_ms: performance.now() - t0 };
    }, kind);
    assert(rampart.backend === kind, `Rampart's init({backend: "${kind}"}) ran on ${rampart.backend} (${rampart.reason})`);
    const direct = await page.evaluate(async (backend) => {
      const t0 = performance.now();
      const m = await import("/pkg/rampart_web.js");
      await m.default({ module_or_path: "/pkg/rampart_web_bg.wasm" });
      const init = await m.init({ backend });
      await m.loadBundle("/fixtures/tiny.rampart");
      window.rampartPage = m;
      return { ...init, startup_ms: performance.now() - t0 };
    }, kind);
    assert(direct.backend === kind, `Rampart's page-thread init({backend: "${kind}"}) ran on ${direct.backend} (${direct.reason})`);
    const tfjs = await page.evaluate(async (backend) => {
      const t0 = performance.now();
      window.tfb = await import("/bench/tfjs_page.js");
      const info = await window.tfb.start(backend, "/fixtures/tiny.safetensors");
      return { ...info, startup_ms: performance.now() - t0 };
    }, tfBackend);
    assert(tfjs.backend === tfBackend, `TF.js runs on ${tfjs.backend}, not ${tfBackend}`);
    // The three contenders, in the order they take turns: classify gives the logits, attack
    // PGD on sample 0 with the options given.
    await page.evaluate((stepSize) => {
      const pgd = (m) => (img, opts) => m.attack({ pixels: Float32Array.from(img), method: "pgd", randomStart: false, ...opts });
      const rampart = (m) => ({ classify: async (img) => (await m.classify(Float32Array.from(img))).logits, attack: pgd(m) });
      window.contenders = {
        rampart: rampart(window.rampart),
        page: rampart(window.rampartPage),
        tfjs: { classify: (img) => window.tfb.classify(img), attack: (img, opts) => window.tfb.pgd(img, { ...opts, stepSize }) },
      };
    }, STEP_SIZE);

    // The first classify of each (kernels and shaders compile here), then every sample on
    // all three: the logits must agree.
    const first = await page.evaluate(async (img) => {
      const out = {};
      for (const [who, c] of Object.entries(window.contenders)) {
        const t0 = performance.now();
        await c.classify(img);
        out[who] = performance.now() - t0;
      }
      return out;
    }, samples.images[0]);
    const logits = await page.evaluate(async (images) => {
      const out = { rampart: [], page: [], tfjs: [] };
      for (const img of images) for (const [who, c] of Object.entries(window.contenders)) out[who].push(await c.classify(img));
      return out;
    }, samples.images);
    let worst = 0;
    logits.rampart.forEach((r, i) => {
      assert(r.length === logits.tfjs[i].length, `sample ${i}: ${r.length} Rampart logits, ${logits.tfjs[i].length} TF.js logits`);
      r.forEach((v, j) => { worst = Math.max(worst, Math.abs(v - logits.tfjs[i][j])); });
      // The same module on either thread: the same numbers.
      assert(r.every((v, j) => v === logits.page[i][j]), `sample ${i}: the worker's and the page thread's logits differ`);
    });
    assert(worst <= TOL, `${kind}: TF.js logits differ from Rampart's by ${worst} > ${TOL}`);

    // Later calls in blocks of CLASSIFY_BLOCK, the three taking turns block by block so that
    // drift in the machine's load hits all; each figure is a block's mean (performance.now()
    // ticks in 0.1 ms steps here, without cross-origin isolation, so single calls are not
    // resolved).
    const tensorsBefore = await page.evaluate(() => window.tfb.numTensors());
    const classify = await page.evaluate(async ({ images, runs, block }) => {
      const out = { rampart: [], page: [], tfjs: [] };
      for (let i = 0; i < runs; i += block) {
        for (const [who, c] of Object.entries(window.contenders)) {
          const t0 = performance.now();
          for (let j = i; j < i + block; j++) await c.classify(images[j % images.length]);
          out[who].push((performance.now() - t0) / block);
        }
      }
      return out;
    }, { images: samples.images, runs: CLASSIFY_RUNS, block: CLASSIFY_BLOCK });

    // PGD-20 on sample 0 against its true label, no random start, the same step.
    const opts = { eps: EPS, steps: STEPS, label: samples.labels[0] };
    const attacks = await page.evaluate(async ({ img, opts, runs }) => {
      const out = { rampart: [], page: [], tfjs: [] };
      for (let i = 0; i <= runs; i++) {
        for (const [who, c] of Object.entries(window.contenders)) {
          const t0 = performance.now();
          const r = await c.attack(img, opts);
          out[who].push({ ms: performance.now() - t0, adversarial: r.adversarial, success: r.success });
        }
      }
      return out;
    }, { img: samples.images[0], opts, runs: PGD_RUNS });
    const tensorsAfter = await page.evaluate(() => window.tfb.numTensors());
    assert(tensorsAfter === tensorsBefore, `TF.js leaks tensors: ${tensorsBefore} before the timed calls, ${tensorsAfter} after`);
    for (const who of ["rampart", "page", "tfjs"]) attacks[who].forEach((a) => checkAttack(`${kind} ${who}`, a.adversarial, samples.images[0]));
    // Same start, step and projection: the two should reach (nearly) the same image; report how near.
    const ra = attacks.rampart[0].adversarial, ta = attacks.tfjs[0].adversarial;
    assert(ra.every((v, i) => v === attacks.page[0].adversarial[i]), `${kind}: the worker's and the page thread's adversarial images differ`);
    const diffs = ra.map((v, i) => Math.abs(v - ta[i]));
    assert(errors.length === 0, `page errors: ${errors.join(" | ")}`);

    const mean = (v) => v.reduce((a, b) => a + b, 0) / v.length;
    const timings = (who) => {
      const later = attacks[who].slice(1);
      return {
        startup_ms: { rampart: rampart.startup_ms, page: direct.startup_ms, tfjs: tfjs.startup_ms }[who],
        classify_first_ms: first[who],
        classify_median_ms: median(classify[who]),
        classify_mean_ms: mean(classify[who]),
        pgd20_first_ms: attacks[who][0].ms,
        pgd20_median_ms: median(later.map((a) => a.ms)),
        pgd20_mean_ms: mean(later.map((a) => a.ms)),
        attack_success: attacks[who][0].success,
        // No random start: every run should reach the same image.
        attack_repeatable: later.every((a) => a.adversarial.every((v, i) => v === attacks[who][0].adversarial[i])),
      };
    };
    return {
      adapter,
      rampart: { backend: rampart.backend, ...timings("rampart") },
      rampart_page_thread: { backend: direct.backend, ...timings("page") },
      tfjs: { backend: tfjs.backend, version: tfjs.version, simd: tfjs.simd, threads: tfjs.threads, ...timings("tfjs") },
      max_logit_diff: worst,
      adversarial_agreement: { max_abs_diff: Math.max(...diffs), within_1e5: diffs.filter((d) => d <= 1e-5).length / diffs.length },
      files: [...served.keys()],
      browser: browser.version(),
    };
  } finally {
    await browser.close();
  }
}

// Bytes of the files a page loaded, raw and gzip -9, grouped by whose they are.
function sizes(urls, owner) {
  const files = {};
  for (const url of urls) {
    const file = served.has(url) ? served.get(url) : null;
    const mine = url.startsWith("/tfjs/") ? "tfjs" : url.startsWith("/fixtures/") || url.startsWith("/bench/") ? null : "rampart";
    if (mine !== owner || !file) continue;
    const data = fs.readFileSync(file);
    files[path.relative(owner === "tfjs" ? path.dirname(path.dirname(path.dirname(file))) : WWW, file)] = { raw: data.length, gzip: zlib.gzipSync(data, { level: 9 }).length };
  }
  const total = (k) => Object.values(files).reduce((s, f) => s + f[k], 0);
  return { files, raw: total("raw"), gzip: total("gzip") };
}

// The architecture, from the export's metadata (u64 header length, then the JSON header).
const st = fs.readFileSync(path.join(FIXTURES, "tiny.safetensors"));
const result = {
  model: JSON.parse(JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString()).__metadata__["rampart.model"]),
  settings: { eps: EPS, steps: STEPS, step_size: STEP_SIZE, step_rule: "2.5*eps/steps", random_start: false, label: "true label of sample 0",
    classify_runs: CLASSIFY_RUNS, classify_block: CLASSIFY_BLOCK, pgd_runs: PGD_RUNS, samples_checked: samples.images.length, logit_tolerance: TOL },
  weights_bytes: { rampart_bundle: fs.statSync(path.join(FIXTURES, "tiny.rampart")).size, safetensors: fs.statSync(path.join(FIXTURES, "tiny.safetensors")).size },
};
let failed = null;
for (const kind of SIDES) {
  try {
    const r = await side(kind);
    result.browser = r.browser;
    result[kind] = r;
    // Map URLs back to files for sizing while `served` still holds them.
    r.sizes = { rampart: sizes(r.files, "rampart"), tfjs: sizes(r.files, "tfjs") };
    delete r.files;
    delete r.browser;
  } catch (e) {
    failed = e;
    console.error(`FAIL ${kind}: ${e.stack || e}`);
    result[kind] = { error: String(e.message || e).split("\n")[0] };
  }
}
server.close();

const json = JSON.stringify(result, null, 2);
console.log(json);
if (process.env.OUT) fs.writeFileSync(process.env.OUT, json + "\n");

// Markdown: times with TF.js / Rampart (> 1: Rampart is faster), then download sizes.
const ms = (v) => (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 2 : 1)} ms`);
const kb = (b) => (b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : `${(b / 1e3).toFixed(1)} kB`);
const ratio = (t, r) => (r > 0 ? `${(t / r).toFixed(2)}×` : "n/a");
const lines = ["", `Headless Chromium ${result.browser ?? ""}, one 28×28 image; PGD-20: L∞, ε = ${EPS}, step ${STEP_SIZE.toFixed(4)} (2.5·ε/steps), no random start.`,
  "Rampart through rampart.js (its calls go to a Web Worker and back) and as pkg/rampart_web.js on the page's thread, where TF.js runs.", "",
  "| backends | measure | Rampart (worker) | Rampart (page thread) | TF.js (page thread) | TF.js / Rampart (worker, page thread) |", "| --- | --- | ---: | ---: | ---: | ---: |"];
const rows = [["startup_ms", "start-up (scripts, wasm, backend, weights)"], ["classify_first_ms", "classify, first"], ["classify_median_ms", `classify, median of ${CLASSIFY_RUNS / CLASSIFY_BLOCK} means of ${CLASSIFY_BLOCK}`],
  ["pgd20_first_ms", "PGD-20, first"], ["pgd20_median_ms", `PGD-20, median of ${PGD_RUNS}`]];
const label = { cpu: "CPU: Rampart cpu / TF.js wasm (1 thread)", webgpu: "WebGPU on SwiftShader (CPU-emulated): Rampart webgpu / TF.js webgpu" };
for (const kind of SIDES) {
  const r = result[kind];
  if (r.error) { lines.push(`| ${label[kind]} | failed: ${r.error.replaceAll("|", "/")} | | | | |`); continue; }
  for (const [k, name] of rows) {
    const [w, p, t] = [r.rampart[k], r.rampart_page_thread[k], r.tfjs[k]];
    lines.push(`| ${label[kind]} | ${name} | ${ms(w)} | ${ms(p)} | ${ms(t)} | ${ratio(t, w)}, ${ratio(t, p)} |`);
  }
}
lines.push("", "Downloads (what the pages loaded, weights not counted); TF.js / Rampart > 1: Rampart is smaller.", "",
  "| code | files | raw | gzip -9 | TF.js / Rampart (raw, gzip) |", "| --- | --- | ---: | ---: | ---: |");
const base = SIDES.map((k) => result[k].sizes?.rampart).find(Boolean);
if (base) lines.push(`| Rampart (cpu and webgpu) | ${Object.keys(base.files).join(", ")} | ${kb(base.raw)} | ${kb(base.gzip)} | |`);
for (const kind of SIDES) {
  const s = result[kind].sizes?.tfjs;
  if (s && base) lines.push(`| TF.js ${kind === "cpu" ? "wasm" : "webgpu"} | ${Object.keys(s.files).map((f) => path.basename(f)).join(", ")} | ${kb(s.raw)} | ${kb(s.gzip)} | ${ratio(s.raw, base.raw)}, ${ratio(s.gzip, base.gzip)} |`);
}
console.log(lines.join("\n"));
if (failed) process.exit(1);
