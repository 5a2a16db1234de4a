// The TF.js side of bench/tfjs_compare.mjs, imported by the page: Rampart's `Cnn`
// (core/src/model.rs) rebuilt with TF.js ops from the weights of `rampart export --format
// safetensors`, and PGD written the way core/src/attack/pgd.rs runs it.
//
// Layouts: the export uses PyTorch's (conv [out, in, kh, kw], linear [out, in], NCHW
// flatten); TF.js wants HWIO filters, NHWC images and [in, out] dense weights. All of it is
// converted once, when the model is built, so that no call pays for a transpose.

let tf; // the global that tf.js's script sets

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(s);
  });
}

// safetensors: u64 little-endian header length, a JSON header ({name: {dtype, shape,
// data_offsets}}, plus "__metadata__"), then the raw little-endian tensor data.
export function parseSafetensors(buffer) {
  const view = new DataView(buffer);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, n)));
  const tensors = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (t.dtype !== "F32") throw new Error(`${name} is ${t.dtype}, not F32`);
    const [a, b] = t.data_offsets;
    const count = t.shape.reduce((p, d) => p * d, 1);
    if (b - a !== 4 * count || 8 + n + b > buffer.byteLength) throw new Error(`${name}: bad data offsets`);
    // A copy: the data need not be 4-byte aligned. Float32Array reads little-endian here
    // (every platform Chromium runs on).
    tensors[name] = { shape: t.shape, data: new Float32Array(buffer.slice(8 + n + a, 8 + n + b)) };
  }
  return { metadata: header.__metadata__ ?? {}, tensors };
}

// The network of a `rampart.model` config (the metadata the export writes).
export function buildModel({ metadata, tensors }) {
  const cfg = JSON.parse(metadata["rampart.model"] ?? "null");
  if (cfg?.arch !== "cnn") throw new Error(`only Rampart's cnn is rebuilt here, not ${cfg?.arch}`);
  // Both change what the network computes in ways this rebuild leaves out.
  if (cfg.input_quantization || cfg.reverse_attention) throw new Error("input quantisation and reverse attention are not rebuilt");
  const { in_channels: c, height: h, width: w, conv_channels: [c1, c2], hidden, num_classes: k } = cfg;
  const style = cfg.style ?? "madry";
  const get = (name, shape) => {
    const t = tensors[name];
    if (!t || t.shape.join() !== shape.join()) throw new Error(`${name}: expected shape [${shape}], got ${t ? `[${t.shape}]` : "nothing"}`);
    return tf.tensor(t.data, t.shape);
  };
  const ks = style === "madry" ? 5 : 4;
  const [fh, fw] = [Math.floor(h / 4), Math.floor(w / 4)];
  const hwio = (name, o, i) => tf.transpose(get(name, [o, i, ks, ks]), [2, 3, 1, 0]);
  const weights = tf.tidy(() => ({
    conv1: hwio("conv1.weight", c1, c),
    b1: get("conv1.bias", [c1]),
    conv2: hwio("conv2.weight", c2, c1),
    b2: get("conv2.bias", [c2]),
    // fc1's inputs are in NCHW order (c, y, x); reorder its rows to NHWC (y, x, c) so that
    // the NHWC feature map flattens straight into it.
    fc1: tf.reshape(tf.transpose(tf.reshape(get("fc1.weight", [hidden, c2 * fh * fw]), [hidden, c2, fh, fw]), [2, 3, 1, 0]), [fh * fw * c2, hidden]),
    b3: get("fc1.bias", [hidden]),
    fc2: tf.transpose(get("fc2.weight", [k, hidden])),
    b4: get("fc2.bias", [k]),
  }));
  // Rampart normalises as (x − mean) · (1/std), with 1/std in f32; skipped when identity.
  const { mean, std } = cfg.normalization;
  const identity = mean.every((m) => m === 0) && std.every((s) => s === 1);
  const norm = identity ? null : { mean: tf.tensor(mean, [1, 1, 1, c]), inv: tf.tensor(std.map((s) => Math.fround(1 / s)), [1, 1, 1, c]) };
  // Madry: conv5×5 pad 2 → ReLU → 2×2 max-pool, twice. Strided: conv4×4 stride 2 pad 1 → ReLU.
  const [stride, pad] = style === "madry" ? [1, 2] : [2, 1];
  const block = (x, filter, bias) => {
    const y = tf.fused.conv2d({ x, filter, bias, strides: stride, pad, activation: "relu" });
    return style === "madry" ? tf.maxPool(y, 2, 2, "valid") : y;
  };
  const forward = (x) => {
    if (norm) x = tf.mul(tf.sub(x, norm.mean), norm.inv);
    const f = block(block(x, weights.conv1, weights.b1), weights.conv2, weights.b2);
    const z = tf.fused.matMul({ a: tf.reshape(f, [f.shape[0], -1]), b: weights.fc1, bias: weights.b3, activation: "relu" });
    return tf.fused.matMul({ a: z, b: weights.fc2, bias: weights.b4 });
  };
  // Images come as Rampart takes them: NCHW values in [0, 1].
  const input = (pixels) => tf.tidy(() => {
    const x = tf.tensor4d(Float32Array.from(pixels), [1, c, h, w]);
    return c === 1 ? tf.reshape(x, [1, h, w, 1]) : tf.transpose(x, [0, 2, 3, 1]);
  });
  const output = (x) => tf.tidy(() => tf.reshape(c === 1 ? x : tf.transpose(x, [0, 3, 1, 2]), [1, c * h * w]));
  return { cfg, forward, input, output, classes: k };
}

let model = null;

// Loads TF.js and the backend's script, selects the backend, builds the model.
export async function start(backend, weightsUrl) {
  await loadScript("/tfjs/tf.js");
  await loadScript(`/tfjs/tf-backend-${backend}.js`);
  tf = globalThis.tf;
  if (backend === "wasm") {
    // One thread, like Rampart's wasm; the page is not cross-origin isolated anyway.
    tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
    tf.wasm.setWasmPaths("/tfjs/");
  }
  if (!(await tf.setBackend(backend))) throw new Error(`TF.js backend ${backend} did not start`);
  await tf.ready();
  const res = await fetch(weightsUrl);
  if (!res.ok) throw new Error(`${weightsUrl}: HTTP ${res.status}`);
  model = buildModel(parseSafetensors(await res.arrayBuffer()));
  return {
    backend: tf.getBackend(), version: tf.version_core,
    simd: backend === "wasm" ? await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT") : undefined,
    threads: backend === "wasm" ? tf.wasm.getThreadsCount?.() : undefined,
  };
}

// The logits of one image.
export async function classify(pixels) {
  const logits = tf.tidy(() => model.forward(model.input(pixels)));
  const out = Array.from(await logits.data());
  logits.dispose();
  return out;
}

// L∞ PGD as Rampart runs it without a random start: ascend the cross-entropy of `label`
// with sign steps of `stepSize`, then project: x + clamp(x_adv − x, ±eps), clamped to [0, 1].
// Like Rampart's attack call it classifies the image before and the result after.
export async function pgd(pixels, { label, eps, steps, stepSize }) {
  const x = model.input(pixels);
  const before = tf.tidy(() => model.forward(x));
  const predicted = argmax(await before.data());
  before.dispose();
  const target = tf.tidy(() => tf.oneHot(tf.tensor1d([label ?? predicted], "int32"), model.classes));
  const grad = tf.grad((xa) => tf.neg(tf.sum(tf.mul(tf.logSoftmax(model.forward(xa)), target))));
  let adv = tf.clone(x);
  for (let i = 0; i < steps; i++) {
    const next = tf.tidy(() => {
      const stepped = tf.add(adv, tf.mul(tf.sign(grad(adv)), stepSize));
      return tf.clipByValue(tf.add(x, tf.clipByValue(tf.sub(stepped, x), -eps, eps)), 0, 1);
    });
    adv.dispose();
    adv = next;
  }
  const after = tf.tidy(() => model.forward(adv));
  const flat = model.output(adv);
  const [logits, adversarial] = await Promise.all([after.data(), flat.data()]);
  const afterPredicted = argmax(logits);
  tf.dispose([x, target, adv, after, flat]);
  return { adversarial: Array.from(adversarial), before: predicted, after: afterPredicted, success: afterPredicted !== (label ?? predicted) };
}

const argmax = (v) => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);

// Tensors alive: a leak would make later calls slower.
export const numTensors = () => tf.memory().numTensors;
