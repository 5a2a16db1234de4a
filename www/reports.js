// The report page: downloads the sentence encoder (with progress, kept in the browser's
// Cache Storage), then classifies, explains and probes reports through rampart-web.
import initRampart, * as rampart from "./rampart.js";
import { $, bars as drawBars, el, escape, options } from "./ui.js";

const status = (msg, error = false) => { $("status").textContent = msg; $("status").className = error ? "error" : ""; };
const MODELS = "models/";
const ENCODER = MODELS + "minilm/";
const CACHE = "rampart-models-v1";
let names = [];
let busy = Promise.resolve();
const exclusive = (f) => (busy = busy.then(f, f));

// Fetches a file, from Cache Storage when it is there, reporting bytes as they arrive.
async function download(url, onBytes) {
  const cache = globalThis.caches ? await caches.open(CACHE) : null;
  const hit = cache && (await cache.match(url));
  if (hit) { const b = new Uint8Array(await hit.arrayBuffer()); onBytes(b.length, b.length); return b; }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`fetching ${url} failed with HTTP ${res.status}`);
  const total = Number(res.headers.get("content-length")) || 0;
  const reader = res.body.getReader();
  const parts = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value); got += value.length; onBytes(got, total);
  }
  const bytes = new Uint8Array(got);
  let at = 0;
  for (const p of parts) { bytes.set(p, at); at += p.length; }
  if (cache) await cache.put(url, new Response(bytes, { headers: { "content-type": "application/octet-stream" } }));
  return bytes;
}

async function loadModel() {
  const files = { bundle: MODELS + "osha.rampart-text", config: ENCODER + "config.json", tokenizer: ENCODER + "tokenizer.json", weights: ENCODER + "model.safetensors" };
  const progress = {};
  const show = () => {
    const got = Object.values(progress).reduce((a, p) => a + p[0], 0);
    const total = Object.values(progress).reduce((a, p) => a + (p[1] || p[0]), 0);
    $("download-bar").value = total ? got / total : 0;
    $("download-text").textContent = `encoder and classifier: ${(got / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`;
  };
  const bytes = {};
  await Promise.all(Object.entries(files).map(async ([k, url]) => {
    bytes[k] = await download(url, (got, total) => { progress[k] = [got, total]; show(); });
  }));
  const info = await rampart.loadTextModel(bytes);
  names = info.classNames;
  $("download").hidden = true;
  return info;
}

function highlight(segments) {
  const top = Math.max(1e-9, ...segments.filter((s) => s.score !== undefined).map((s) => Math.abs(s.score)));
  $("highlighted").replaceChildren(...segments.map((s) => {
    if (s.score === undefined) return document.createTextNode(s.text);
    const a = Math.min(1, Math.abs(s.score) / top).toFixed(2);
    const word = el("span", "word", s.text);
    word.style.background = s.score >= 0 ? `rgba(40,160,80,${a})` : `rgba(216,85,59,${a})`;
    word.title = s.score.toFixed(4);
    return word;
  }));
}

const bars = (container, probs) => drawBars(container, probs, names);

const text = () => $("report").value;
const guarded = (what, f) => () => exclusive(async () => {
  status(`${what}…`);
  try { await f(); status("ready"); } catch (e) { status(e.message, true); }
});

const classify = guarded("classifying", async () => {
  const p = await rampart.classifyReport(text());
  bars($("probs"), p.probabilities);
});
const explain = guarded("explaining", async () => {
  const x = await rampart.explainReport(text());
  bars($("probs"), x.probabilities);
  $("explain-method").textContent = `(${x.label}; ${x.method})`;
  highlight(x.segments);
});
const probe = guarded("probing", async () => {
  const p = await rampart.probeReport(text());
  const emb = p.embedding
    ? `An embedding perturbation of L2 norm <b>${p.embedding.radius.toFixed(4)}</b> (the embedding has norm 1) turns it into <b>${escape(p.embedding.label)}</b>.`
    : "No embedding perturbation within the search radius changes the prediction.";
  const rem = p.removal
    ? `Removing ${p.removal.words.length} word(s) — <b>${p.removal.words.map(escape).join(", ")}</b> — turns it into <b>${escape(p.removal.label)}</b>.`
    : "Removing its most important words does not change the prediction.";
  $("probe-result").innerHTML = `Predicted <b>${escape(p.label)}</b>. ${emb} ${rem}`;
});

$("classify").onclick = classify;
$("explain").onclick = explain;
$("probe").onclick = probe;
$("example").onchange = () => { $("report").value = $("example").value; classify(); };
$("backend-choice").onchange = () => exclusive(async () => {
  const r = await rampart.init({ backend: $("backend-choice").value });
  $("backend").textContent = r.backend === "webgpu" ? "WebGPU" : `CPU${r.reason ? ` (${r.reason})` : ""}`;
});

(async () => {
  try {
    await initRampart();
    const r = await rampart.init({ backend: new URLSearchParams(location.search).get("backend") || "auto" });
    $("backend").textContent = r.backend === "webgpu" ? "WebGPU" : `CPU${r.reason ? ` (${r.reason})` : ""}`;
    status("downloading the model…");
    await loadModel();
    const examples = await fetch(MODELS + "reports.json").then((r) => (r.ok ? r.json() : []), () => []);
    options($("example"), examples.map((e, i) => [e.text, `${i + 1}. ${e.label}: ${e.text.slice(0, 60)}…`]));
    if (examples.length) $("report").value = examples[0].text;
    status("ready");
    if (text().trim()) await explain();
  } catch (e) {
    status(e.message, true);
  }
})();
