//! The exported functions. Types for TypeScript are declared in the custom section below.

use burn::tensor::Device;
use js_sys::{Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::{
    AttackOptions, Backend, STATE, classify_pixels, device, err, install_bundle, loaded,
    run_attack, to_js,
};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
export type BackendChoice = "auto" | "webgpu" | "cpu";
export interface InitOptions { backend?: BackendChoice }
export interface InitResult { backend: "webgpu" | "cpu"; reason?: string }
export interface BundleInfo {
  arch: string; dataset: string; classNames: string[];
  inputShape: [number, number, number]; metrics: unknown; recipe: unknown;
}
export interface Prediction { logits: number[]; probabilities: number[]; predicted: number; label: string }
export interface AttackOptions {
  pixels: Float32Array | number[];
  method?: "fgsm" | "fgsm-l2" | "pgd" | "pgd-l2" | "apgd-ce" | "apgd-t" | "square" | "mi-fgsm";
  eps: number; steps?: number; stepSize?: number; restarts?: number; randomStart?: boolean;
  loss?: "ce" | "cw"; label?: number; target?: number; seed?: number;
}
export interface AttackResult {
  adversarial: number[]; perturbation: number[]; before: Prediction; after: Prediction;
  success: boolean; linf: number; l2: number; attack: string; eps: number;
}
"#;

#[cfg(target_family = "wasm")]
unsafe extern "C" {
    /// Synthesised by the wasm linker: runs the static constructors (CubeCL registers its IR
    /// through `inventory`).
    fn __wasm_call_ctors();
}

#[wasm_bindgen(start)]
pub fn start() {
    // Called once here, explicitly: otherwise the linker assumes a one-shot "command" module and
    // runs every constructor again at the top of *each* export, JS glue included — most of an
    // attack call's time (bench/wasm_calls.mjs).
    #[cfg(target_family = "wasm")]
    // SAFETY: the first Rust code to run after instantiation; nothing has read the registries.
    unsafe {
        __wasm_call_ctors()
    };
    // The panic's message goes to the console and to `globalThis.__rampartLastPanic`, where the
    // worker (www/rampart-worker.js) reads it to say why the call trapped.
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let _ = Reflect::set(
            &js_sys::global(),
            &"__rampartLastPanic".into(),
            &info.to_string().into(),
        );
    }));
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InitOptions {
    backend: Option<String>,
}

#[derive(Serialize)]
struct InitResult {
    backend: Backend,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// serde-wasm-bindgen reads only the fields it knows; a misspelt option must not pass silently.
pub(crate) fn reject_unknown_keys(
    options: &JsValue,
    allowed: &[&str],
    call: &str,
) -> Result<(), JsError> {
    if !options.is_object() {
        return Err(err(format!("{call} takes an options object")));
    }
    for key in js_sys::Object::keys(options.unchecked_ref::<js_sys::Object>()).iter() {
        let key = key.as_string().unwrap_or_default();
        if !allowed.contains(&key.as_str()) {
            return Err(err(format!(
                "{call}: unknown field '{key}' (expected one of {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

/// Whether this browser offers a WebGPU adapter (`navigator.gpu.requestAdapter()`).
async fn webgpu_adapter() -> Result<(), String> {
    let global = js_sys::global();
    let navigator =
        Reflect::get(&global, &"navigator".into()).map_err(|_| "no navigator".to_string())?;
    let gpu = Reflect::get(&navigator, &"gpu".into()).unwrap_or(JsValue::UNDEFINED);
    if gpu.is_undefined() || gpu.is_null() {
        return Err("navigator.gpu is missing (WebGPU unavailable)".into());
    }
    let request = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or("navigator.gpu.requestAdapter is missing")?;
    let promise = request
        .call0(&gpu)
        .map_err(|_| "requestAdapter() threw")?
        .dyn_into::<js_sys::Promise>()
        .map_err(|_| "requestAdapter() did not return a promise")?;
    let adapter = JsFuture::from(promise)
        .await
        .map_err(|_| "requestAdapter() rejected")?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("no WebGPU adapter".into());
    }
    Ok(())
}

async fn webgpu_device() -> Result<Device, String> {
    if let Some(d) = STATE.with(|s| s.borrow().webgpu.clone()) {
        return Ok(d);
    }
    webgpu_adapter().await?;
    let d = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("WebGPU initialisation failed: {e}"))?;
    STATE.with(|s| s.borrow_mut().webgpu = Some(d.clone()));
    Ok(d)
}

/// Chooses the backend. `auto` takes WebGPU when the browser offers it, else the CPU.
#[wasm_bindgen(js_name = init, unchecked_return_type = "InitResult")]
pub async fn init(
    #[wasm_bindgen(unchecked_param_type = "InitOptions | undefined")] options: JsValue,
) -> Result<JsValue, JsError> {
    let options: InitOptions = if options.is_undefined() || options.is_null() {
        InitOptions::default()
    } else {
        reject_unknown_keys(&options, &["backend"], "init")?;
        serde_wasm_bindgen::from_value(options)
            .map_err(|e| err(format!("invalid init options: {e}")))?
    };
    let (backend, device, reason) = match options.backend.as_deref().unwrap_or("auto") {
        "cpu" => (Backend::Cpu, Device::flex(), None),
        "webgpu" => (Backend::Webgpu, webgpu_device().await.map_err(err)?, None),
        "auto" => match webgpu_device().await {
            Ok(d) => (Backend::Webgpu, d, None),
            Err(why) => (Backend::Cpu, Device::flex(), Some(why)),
        },
        other => {
            return Err(err(format!(
                "unknown backend '{other}' (auto, webgpu, cpu)"
            )));
        }
    };
    let source = STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.active = Some((backend, device));
        s.source.clone()
    });
    // Move already loaded models to the new device.
    if let Some(bundle) = source {
        install_bundle(&bundle.to_bytes())?;
    }
    let text = STATE.with(|s| s.borrow().text.as_ref().map(|t| t.source.clone()));
    if let Some(text) = text {
        crate::text::install(text).await?;
    }
    to_js(&InitResult { backend, reason })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BundleInfo {
    arch: String,
    dataset: String,
    class_names: Vec<String>,
    input_shape: [usize; 3],
    metrics: serde_json::Value,
    recipe: serde_json::Value,
}

/// Loads a bundle from a URL or from its bytes.
#[wasm_bindgen(js_name = loadBundle, unchecked_return_type = "BundleInfo")]
pub async fn load_bundle(
    #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] source: JsValue,
) -> Result<JsValue, JsError> {
    device()?;
    let bytes: Vec<u8> = if let Some(url) = source.as_string() {
        fetch_bytes(&url).await?
    } else if source.is_instance_of::<Uint8Array>() {
        Uint8Array::from(source).to_vec()
    } else {
        return Err(err("loadBundle takes a URL string or a Uint8Array"));
    };
    let header = install_bundle(&bytes)?;
    to_js(&BundleInfo {
        arch: header.model.arch_name().into(),
        dataset: header.dataset.clone(),
        class_names: header.class_names.clone(),
        input_shape: header.model.input_shape(),
        metrics: header.metrics.clone(),
        recipe: header.recipe.clone(),
    })
}

pub(crate) async fn fetch_bytes(url: &str) -> Result<Vec<u8>, JsError> {
    let global = js_sys::global();
    let fetch = Reflect::get(&global, &"fetch".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or_else(|| err("fetch() is not available"))?;
    let promise = fetch
        .call1(&global, &url.into())
        .map_err(|_| err(format!("fetch({url}) threw")))?
        .dyn_into::<js_sys::Promise>()
        .map_err(|_| err("fetch did not return a promise"))?;
    let response: web_sys::Response = JsFuture::from(promise)
        .await
        .map_err(|_| err(format!("could not fetch {url}")))?
        .dyn_into()
        .map_err(|_| err("fetch did not return a Response"))?;
    if !response.ok() {
        return Err(err(format!(
            "fetching {url} failed with HTTP {}",
            response.status()
        )));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(|_| err("no body"))?)
        .await
        .map_err(|_| err(format!("reading {url} failed")))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

fn pixels_from(value: &JsValue) -> Result<Vec<f32>, JsError> {
    if value.is_instance_of::<js_sys::Float32Array>() {
        return Ok(js_sys::Float32Array::from(value.clone()).to_vec());
    }
    if js_sys::Array::is_array(value) {
        let array = js_sys::Array::from(value);
        return array
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| err(format!("pixels[{i}] is not a number")))
            })
            .collect();
    }
    Err(err("pixels must be a Float32Array or an array of numbers"))
}

/// Class probabilities of one image (`C×H×W` values in `[0, 1]`).
#[wasm_bindgen(js_name = classify, unchecked_return_type = "Prediction")]
pub async fn classify(
    #[wasm_bindgen(unchecked_param_type = "Float32Array | number[]")] pixels: JsValue,
) -> Result<JsValue, JsError> {
    let device = device()?;
    let loaded = loaded()?;
    let (header, model) = &*loaded;
    let pixels = pixels_from(&pixels)?;
    to_js(&classify_pixels(model, &pixels, header, &device).await?)
}

/// Runs an attack on one image; returns the adversarial image, the perturbation and the
/// predictions before and after.
#[wasm_bindgen(js_name = attack, unchecked_return_type = "AttackResult")]
pub async fn attack(
    #[wasm_bindgen(unchecked_param_type = "AttackOptions")] options: JsValue,
) -> Result<JsValue, JsError> {
    if !options.is_object() {
        return Err(err("attack takes an options object"));
    }
    reject_unknown_keys(
        &options,
        &[
            "pixels",
            "method",
            "eps",
            "steps",
            "stepSize",
            "restarts",
            "randomStart",
            "loss",
            "label",
            "target",
            "seed",
        ],
        "attack",
    )?;
    // Accept a Float32Array for `pixels` by converting it before deserialising.
    let pixels = Reflect::get(&options, &"pixels".into()).unwrap_or(JsValue::UNDEFINED);
    if pixels.is_undefined() {
        return Err(err("attack options need `pixels`"));
    }
    let pixels = pixels_from(&pixels)?;
    let copy = js_sys::Object::assign(&js_sys::Object::new(), options.unchecked_ref());
    Reflect::set(&copy, &"pixels".into(), &js_sys::Array::new()).map_err(|_| err("bad options"))?;
    let mut parsed: AttackOptions = serde_wasm_bindgen::from_value(copy.into())
        .map_err(|e| err(format!("invalid attack options: {e}")))?;
    parsed.pixels = pixels;
    to_js(&run_attack(parsed).await?)
}

/// The backend in use (`"webgpu"` or `"cpu"`), or `undefined` before `init()`.
#[wasm_bindgen(js_name = backend)]
pub fn backend() -> Option<String> {
    STATE.with(|s| {
        s.borrow().active.as_ref().map(|(b, _)| match b {
            Backend::Webgpu => "webgpu".into(),
            Backend::Cpu => "cpu".into(),
        })
    })
}
