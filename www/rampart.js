// Rampart's browser API: the functions of pkg/rampart_web.js with the same names, arguments
// and results, run in a Web Worker (rampart-worker.js) so that the page never freezes.
//
// - Long calls (attack, diagnose, evaluateSuite, probeReport) take two more options:
//   `onProgress({ done, total })` (steps done; `total` is the planned count when known) and
//   `signal` (an AbortSignal). Aborting rejects the call at once with the signal's reason
//   (an AbortError): the worker is stopped mid-step and a fresh one takes its place.
// - A trap inside the module (a Rust panic, running out of memory) rejects the call with an
//   Error saying so; the module is then re-instantiated and the last successful init(),
//   loadBundle() and loadTextModel() are replayed, so that the next good call succeeds.
// - Calls run one at a time, in the order they were made.

const WORKER = new URL("./rampart-worker.js", import.meta.url);
const LONG = new Set(["attack", "diagnose", "evaluateSuite", "probeReport"]);
// The calls whose effect a fresh module needs replayed, in this order.
const STATEFUL = ["init", "loadBundle", "loadTextModel"];

let worker = null;
let started = null;
let nextId = 1;
const pending = new Map(); // id → { fn, args, resolve, reject, onProgress }
const replay = new Map(); // fn → args of its last success
let lastBackend;
let generation = 0; // of the worker: a restart makes a new one

const base = () => (globalThis.document ? document.baseURI : globalThis.location?.href);
// The worker lives elsewhere: URLs are resolved against the page before they are sent.
const resolveUrl = (v) => (typeof v === "string" ? new URL(v, base()).href : v);
function resolveUrls(fn, args) {
  if (fn === "loadBundle") return [resolveUrl(args[0])];
  if (fn === "loadTextModel" && args[0] && typeof args[0] === "object" && !ArrayBuffer.isView(args[0])) {
    return [Object.fromEntries(Object.entries(args[0]).map(([k, v]) => [k, resolveUrl(v)]))];
  }
  return args;
}

// Sends a call to the current worker; while a restart is under way it waits, and the restart
// sends it (`sent` says to which worker generation it went).
function post(id, call) {
  if (!worker) return;
  call.sent = generation;
  worker.postMessage({ id, fn: call.fn, args: call.args });
}

// A raw call to the current worker, outside the queue of user calls (used for replays).
function direct(fn, args) {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { fn, args, resolve, reject, internal: true });
    post(id, pending.get(id));
  });
}

function onMessage({ data }) {
  const call = pending.get(data.id);
  if (!call) return; // a call already aborted
  if (data.progress) {
    const [done, total] = data.progress;
    try { call.onProgress?.({ done, total }); } catch (e) { console.error(e); }
    return;
  }
  pending.delete(data.id);
  if (data.ok) {
    if (STATEFUL.includes(call.fn) && !call.internal) replay.set(call.fn, call.args);
    if (call.fn === "init") lastBackend = data.value?.backend;
    call.resolve(data.value);
    return;
  }
  if (data.trap) {
    call.reject(new Error(`rampart-web crashed in ${call.fn}() (${data.message}); the module was restarted`));
    restart();
    return;
  }
  call.reject(new Error(data.message));
}

function spawn() {
  worker = new Worker(WORKER, { type: "module" });
  worker.onmessage = onMessage;
  worker.onerror = (e) => {
    e.preventDefault?.();
    const err = new Error(`rampart-web's worker failed: ${e.message || "could not load it"}`);
    for (const [id, call] of pending) { pending.delete(id); call.reject(err); }
    worker.terminate();
    worker = null;
    started = null;
  };
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { fn: "ready", args: [], resolve, reject, internal: true });
    worker.postMessage({ id, fn: "ready", args: [] });
  });
}

// Stops the worker (whatever it is doing) and brings up a fresh one with the replayed state;
// calls still waiting are sent again once it is ready.
function restart() {
  const gen = ++generation;
  if (worker) {
    // Deaf at once, stopped in the next task: the caller's rejection is not kept waiting.
    const old = worker;
    old.onmessage = old.onerror = null;
    setTimeout(() => old.terminate(), 0);
  }
  for (const [id, c] of pending) if (c.internal) { pending.delete(id); c.reject(new Error("rampart-web was restarted")); }
  worker = null;
  const ready = (async () => {
    // The new worker is made in a later task: the aborted or failed call's rejection reaches
    // its caller first.
    await new Promise((r) => setTimeout(r, 0));
    if (gen !== generation) throw new Error("superseded by a later restart");
    await spawn();
    for (const fn of STATEFUL) if (replay.has(fn)) await direct(fn, replay.get(fn));
  })();
  started = ready;
  ready.then(
    () => {
      if (gen !== generation) return;
      for (const [id, c] of pending) if (!c.internal && c.sent !== gen) post(id, c);
    },
    (e) => {
      if (gen !== generation) return; // a later restart took over
      // The state cannot be rebuilt: drop it rather than loop, and fail what waited.
      replay.clear();
      started = null;
      for (const [id, c] of pending) if (!c.internal && pending.delete(id)) c.reject(new Error(`rampart-web could not restart: ${e.message}`));
    },
  );
}

function ensure() {
  if (!started) started = spawn();
  return started;
}

function split(fn, args) {
  // The long calls' extra options never reach the module (they are not data).
  const i = fn === "probeReport" ? 1 : 0;
  const o = args[i];
  if (!LONG.has(fn) || !o || typeof o !== "object" || !("onProgress" in o || "signal" in o)) return { args };
  const { onProgress, signal, ...rest } = o;
  if (onProgress !== undefined && typeof onProgress !== "function") throw new Error(`${fn}: onProgress must be a function`);
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new Error(`${fn}: signal must be an AbortSignal`);
  const copy = args.slice();
  copy[i] = rest;
  return { args: copy, onProgress, signal };
}

async function call(fn, ...raw) {
  const { args, onProgress, signal } = split(fn, raw);
  if (signal?.aborted) throw signal.reason;
  await ensure();
  return new Promise((resolve, reject) => {
    const id = nextId++;
    const entry = { fn, args: resolveUrls(fn, args), resolve, reject, onProgress };
    pending.set(id, entry);
    if (signal) {
      const abort = () => {
        if (!pending.delete(id)) return;
        reject(signal.reason);
        restart();
      };
      signal.addEventListener("abort", abort, { once: true });
      const done = () => signal.removeEventListener("abort", abort);
      entry.resolve = (v) => { done(); resolve(v); };
      entry.reject = (e) => { done(); reject(e); };
    }
    post(id, entry);
  });
}

/** Starts the worker and instantiates the module in it (calls do this themselves too). */
export default async function initRampart() {
  await ensure();
}

export const init = (options) => call("init", options);
export const loadBundle = (source) => call("loadBundle", source);
export const classify = (pixels) => call("classify", pixels);
export const attack = (options) => call("attack", options);
export const diagnose = (options) => call("diagnose", options);
export const evaluateSuite = (options) => call("evaluateSuite", options);
export const loadTextModel = (sources) => call("loadTextModel", sources);
export const classifyReport = (text) => call("classifyReport", text);
export const explainReport = (text, options) => call("explainReport", text, options);
export const probeReport = (text, options) => call("probeReport", text, options);
export const embedReports = (texts) => call("embedReports", texts);
/** The backend of the last successful init(): "webgpu", "cpu", or undefined before it. */
export const backend = () => lastBackend;
/** Panics inside the module on purpose: for tests of the recovery above. */
export const __panicForTesting = () => call("__panicForTesting");
