// The demo page: draws or picks an image, classifies it live, and attacks it, all in the
// browser through rampart-web (WebGPU, or the CPU fallback).
import initRampart, * as rampart from "./rampart.js";
import { $, bars, listItems, options } from "./ui.js";

const status = (msg, error = false) => { $("status").textContent = msg; $("status").className = error ? "error" : ""; };
let info = null;
let samples = [];
let current = null;
let busy = Promise.resolve();

// Serialise calls into the wasm module: one computation at a time.
const exclusive = (f) => (busy = busy.then(f, f));

// A long call's progress in the status line, and the stop button that aborts it.
function longCall(label) {
  const controller = new AbortController();
  $("stop").hidden = false;
  $("stop").onclick = () => controller.abort();
  const onProgress = ({ done, total }) => status(total ? `${label} ${done} / ${total} steps` : `${label} ${done} steps`);
  const end = () => { $("stop").hidden = true; };
  return { signal: controller.signal, onProgress, end };
}

function drawImage(canvas, pixels, [c, h, w]) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let ch = 0; ch < 3; ch++) img.data[4 * i + ch] = 255 * pixels[(c === 3 ? ch * h * w : 0) + i];
    img.data[4 * i + 3] = 255;
  }
  const tmp = new OffscreenCanvas(w, h);
  tmp.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
}


// Drawing: white strokes on black, read back at the model's resolution.
const draw = $("draw");
const dctx = draw.getContext("2d");
function clearDrawing() { dctx.fillStyle = "#000"; dctx.fillRect(0, 0, draw.width, draw.height); }
function drawnPixels() {
  const [, h, w] = info.inputShape;
  const small = new OffscreenCanvas(w, h);
  const sctx = small.getContext("2d");
  sctx.drawImage(draw, 0, 0, w, h);
  const data = sctx.getImageData(0, 0, w, h).data;
  const px = new Float32Array(h * w);
  for (let i = 0; i < h * w; i++) px[i] = data[4 * i] / 255;
  return px;
}
let drawing = false;
draw.addEventListener("pointerdown", (e) => { drawing = true; stroke(e); });
draw.addEventListener("pointermove", (e) => drawing && stroke(e));
window.addEventListener("pointerup", () => { if (drawing) { drawing = false; current = drawnPixels(); classifyCurrent(); } });
function stroke(e) {
  const r = draw.getBoundingClientRect();
  dctx.fillStyle = "#fff";
  dctx.beginPath();
  dctx.arc(e.clientX - r.left, e.clientY - r.top, 11, 0, 2 * Math.PI);
  dctx.fill();
}

function classifyCurrent() {
  if (!current) return;
  return exclusive(async () => {
    try {
      const p = await rampart.classify(current);
      bars($("probs"), p.probabilities, info.classNames);
    } catch (e) { status(e.message, true); }
  });
}

function runAttack() {
  if (!current) return;
  return exclusive(async () => {
    status("attacking…");
    const t0 = performance.now();
    const run = longCall("attacking:");
    try {
      const r = await rampart.attack({ pixels: current, method: $("method").value, eps: +$("eps").value, steps: +$("steps").value,
        signal: run.signal, onProgress: run.onProgress });
      drawImage($("adv"), r.adversarial, info.inputShape);
      const m = Math.max(1e-12, ...r.perturbation.map(Math.abs));
      drawImage($("delta"), r.perturbation.map((d) => 0.5 + 0.5 * d / m), info.inputShape);
      $("attack-result").textContent = `${r.before.label} → ${r.after.label} ` +
        `(${r.success ? "fooled" : "held"}; ${r.attack}, ε=${+r.eps.toPrecision(4)}, L∞=${r.linf.toFixed(3)}, L2=${r.l2.toFixed(3)})`;
      bars($("adv-probs"), r.after.probabilities, info.classNames);
      status(`attack took ${(performance.now() - t0).toFixed(0)} ms`);
    } catch (e) { status(e.message, true); } finally { run.end(); }
  });
}

// Human units for an attribute's coefficient.
function describe(name, v) {
  if (name === "rotation") return `rotated ${(v * 180 / Math.PI).toFixed(0)}°`;
  // The content moves by +v (the sampling map subtracts it).
  if (name.startsWith("translate")) return `shifted ${Math.abs(v).toFixed(1)} px ${name.endsWith("x") ? (v > 0 ? "right" : "left") : (v > 0 ? "down" : "up")}`;
  if (name === "thickness") return v > 0 ? `thickened stroke (${v.toFixed(2)})` : `thinned stroke (${v.toFixed(2)})`;
  return `${name} ${v >= 0 ? "+" : ""}${v.toFixed(2)}`;
}

function runDiagnose() {
  return exclusive(async () => {
    status("diagnosing…");
    const t0 = performance.now();
    const run = longCall("diagnosing:");
    try {
      const d = await rampart.diagnose({
        samples: samples.images.map((p, i) => ({ pixels: p, label: samples.labels[i] })),
        eps: +$("sia-eps").value, steps: +$("sia-steps").value, images: true, signal: run.signal, onProgress: run.onProgress,
      });
      $("diagnose-result").textContent = `${d.overall.attacks} of ${d.clean_correct} correctly classified images broken ` +
        `(${(100 * d.success_rate).toFixed(0)} %). Share of the attribute change:`;
      const top = Math.max(1e-9, ...d.overall.mass);
      bars($("attribute-bars"), d.overall.mass, d.attributes, { width: (m) => 150 * m / top, highlightTop: false });
      $("gallery").replaceChildren();
      for (const ex of d.examples.slice(0, 8)) {
        const ranked = ex.coefficients.map((v, i) => [i, Math.abs(v)]).sort((a, b) => b[1] - a[1]).slice(0, 2);
        const fig = document.createElement("figure");
        const c = document.createElement("canvas");
        c.width = c.height = 84;
        drawImage(c, ex.adversarial, info.inputShape);
        const cap = document.createElement("figcaption");
        cap.textContent = `${ranked.map(([i]) => describe(d.attributes[i], ex.coefficients[i])).join(", ")} → ` +
          `${info.classNames[ex.label]} read as ${info.classNames[ex.predicted]}`;
        fig.append(c, cap);
        $("gallery").append(fig);
      }
      status(`diagnosis took ${(performance.now() - t0).toFixed(0)} ms`);
    } catch (e) { status(e.message, true); } finally { run.end(); }
  });
}

// Accuracy against ε as an SVG line chart (the suite's sanity curve, PGD-20).
function drawCurve(svg, points) {
  const [w, h, pad] = [360, 180, 30];
  const x = (e) => pad + (w - 2 * pad) * e;
  const y = (a) => h - pad - (h - 2 * pad) * a;
  const line = points.map(([e, a]) => `${x(e).toFixed(1)},${y(a).toFixed(1)}`).join(" ");
  svg.innerHTML = `<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="currentColor"/>` +
    `<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="currentColor"/>` +
    `<text x="${w - pad}" y="${h - 8}" text-anchor="end" font-size="11">ε (L∞) → 1</text>` +
    `<text x="4" y="${pad - 8}" font-size="11">accuracy</text>` +
    `<polyline points="${line}" fill="none" stroke="#c33" stroke-width="2"/>` +
    points.map(([e, a]) => `<circle cx="${x(e).toFixed(1)}" cy="${y(a).toFixed(1)}" r="3" fill="#c33"><title>ε ${e}: ${(100 * a).toFixed(0)} %</title></circle>`).join("");
}

function runSuite() {
  return exclusive(async () => {
    status("running the quick suite…");
    const t0 = performance.now();
    const run = longCall("quick suite:");
    try {
      const r = await rampart.evaluateSuite({
        samples: samples.images.map((p, i) => ({ pixels: p, label: samples.labels[i] })), eps: +$("suite-eps").value,
        signal: run.signal, onProgress: run.onProgress,
      });
      $("suite-result").textContent = `clean ${(100 * r.clean_accuracy).toFixed(0)} %, robust ${(100 * r.robust_accuracy).toFixed(0)} % ` +
        `at ε = ${r.eps} (` + r.stages.map((s) => `${s.attack} broke ${s.broke}`).join(", ") + ")";
      drawCurve($("eps-curve"), [[0, r.clean_accuracy], ...r.sanity.eps_curve]);
      if (r.sanity.flags.length) listItems($("suite-flags"), r.sanity.flags, "error");
      else listItems($("suite-flags"), ["sanity checks passed"]);
      status(`suite took ${(performance.now() - t0).toFixed(0)} ms`);
    } catch (e) { status(e.message, true); } finally { run.end(); }
  });
}

async function start(backend) {
  status("loading…");
  try {
    const r = await rampart.init({ backend });
    $("backend").textContent = r.backend === "webgpu" ? "WebGPU" : "CPU" + (r.reason ? ` (${r.reason})` : "");
    if (!info) {
      info = await rampart.loadBundle("models/demo.rampart");
      samples = await (await fetch("models/samples.json")).json();
      options($("sample"), samples.images.map((_, i) => [i, `#${i} (${info.classNames[samples.labels[i]]})`]));
      pick(0);
    }
    status("ready");
    classifyCurrent();
  } catch (e) { status(e.message, true); }
}

function pick(i) {
  current = Float32Array.from(samples.images[i]);
  drawImage(draw, current, info.inputShape);
  classifyCurrent();
}

$("clear").onclick = () => { clearDrawing(); current = null; $("probs").replaceChildren(); };
$("sample").onchange = (e) => pick(+e.target.value);
$("eps").oninput = (e) => { $("eps-value").textContent = (+e.target.value).toFixed(2); };
$("run-attack").onclick = runAttack;
$("run-diagnose").onclick = runDiagnose;
$("run-suite").onclick = runSuite;
$("backend-choice").onchange = (e) => exclusive(() => start(e.target.value));

await initRampart();
clearDrawing();
exclusive(() => start("auto"));
