// The worker behind rampart.js: instantiates pkg/rampart_web.js and runs the calls posted to
// it one at a time, answering { id, ok, value } or { id, ok: false, message, trap } and, while
// a long call runs, { id, progress: [done, total] } at most every 20 ms.
import initWasm, * as rampart from "./pkg/rampart_web.js";

const ready = initWasm({ module_or_path: new URL("./pkg/rampart_web_bg.wasm", import.meta.url) });
let current = null;
let lastPost = 0;
ready.then(() => rampart.setProgressHook((done, total) => {
  const now = performance.now();
  if (current === null || (now - lastPost < 20 && done !== total)) return;
  lastPost = now;
  postMessage({ id: current, progress: [done, total] });
}));

// A trap leaves the module unusable: the page must replace this worker.
const isTrap = (e) => e instanceof WebAssembly.RuntimeError || e instanceof RangeError
  || (e instanceof Error && /unreachable|out of memory|memory access out of bounds/i.test(e.message));

let queue = Promise.resolve();
self.onmessage = ({ data: { id, fn, args } }) => {
  queue = queue.then(async () => {
    try {
      await ready;
      if (fn === "ready") return postMessage({ id, ok: true });
      if (typeof rampart[fn] !== "function" || fn === "default" || fn === "initSync") throw new Error(`unknown function ${fn}`);
      current = id;
      lastPost = 0;
      const value = await rampart[fn](...args);
      postMessage({ id, ok: true, value });
    } catch (e) {
      const trap = isTrap(e);
      let message = e instanceof Error ? e.message : String(e);
      if (trap && self.__rampartLastPanic) message = `${message}: ${self.__rampartLastPanic}`;
      postMessage({ id, ok: false, message, trap });
    } finally {
      current = null;
    }
  });
};
