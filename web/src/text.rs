//! The report classifier in the browser: MiniLM + the MLP head of a text bundle, with the
//! same explanations and probes as `rampart text explain|probe`.

use std::rc::Rc;

use js_sys::Uint8Array;
use rampart_core::argmax;
use rampart_core::bundle::TextBundle;
use rampart_core::text::classifier::Mlp;
use rampart_core::text::encoder::SentenceEncoder;
use rampart_core::text::explain::{self, ProbeConfig};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::api::{fetch_bytes, reject_unknown_keys};
use crate::{STATE, device, err, to_js};

/// What `loadTextModel` was given, kept so that `init()` can move the model to a new backend.
#[derive(Clone)]
pub(crate) struct TextSource {
    bundle: Rc<Vec<u8>>,
    config: Rc<Vec<u8>>,
    weights: Rc<Vec<u8>>,
    tokenizer: Rc<Vec<u8>>,
}

pub(crate) struct TextModel {
    bundle: TextBundle,
    encoder: Rc<SentenceEncoder>,
    mlp: Mlp,
    pub(crate) source: TextSource,
}

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
export type Bytes = string | Uint8Array;
export interface TextModelSources { bundle: Bytes; config: Bytes; weights: Bytes; tokenizer: Bytes }
export interface TextModelInfo {
  classNames: string[]; encoder: string; encoderFingerprint: string; recipe: unknown; metrics: unknown;
}
export interface ReportPrediction { probabilities: number[]; predicted: number; label: string; classNames: string[] }
export interface Segment { text: string; score?: number }
export interface ReportExplanation {
  method: string; class: number; label: string; probabilities: number[]; segments: Segment[];
}
export interface ExplainOptions { class?: number }
export interface ProbeOptions { maxRadius?: number; maxWords?: number }
export interface ReportProbe {
  predicted: number; label: string; probabilities: number[];
  embedding: { radius: number; class: number; label: string } | null;
  removal: { words: string[]; class: number; label: string; text: string } | null;
}
"#;

fn loaded() -> Result<(TextBundle, Rc<SentenceEncoder>, Mlp), JsError> {
    STATE.with(|s| {
        s.borrow()
            .text
            .as_ref()
            .map(|t| (t.bundle.clone(), t.encoder.clone(), t.mlp.clone()))
            .ok_or_else(|| err("no text model loaded: call loadTextModel() first"))
    })
}

/// Builds the model from its sources on the active device and makes it current.
pub(crate) async fn install(source: TextSource) -> Result<TextModelInfo, JsError> {
    let device = device()?;
    let bundle = TextBundle::from_bytes(&source.bundle).map_err(err)?;
    let encoder = SentenceEncoder::from_bytes(
        &source.config,
        &source.weights,
        &source.tokenizer,
        256,
        &device,
    )
    .map_err(err)?;
    // A fine-tuned bundle replaces the encoder's top layers with its own.
    let encoder = bundle.encoder(encoder, &device).await.map_err(err)?;
    let mlp = bundle.model(&device).map_err(err)?;
    let info = TextModelInfo {
        class_names: bundle.header.class_names.clone(),
        encoder: bundle.header.encoder.clone(),
        encoder_fingerprint: bundle.header.encoder_fingerprint.clone(),
        recipe: bundle.header.recipe.clone(),
        metrics: bundle.header.metrics.clone(),
    };
    STATE.with(|s| {
        s.borrow_mut().text = Some(TextModel {
            bundle,
            encoder: Rc::new(encoder),
            mlp,
            source,
        })
    });
    Ok(info)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TextModelInfo {
    class_names: Vec<String>,
    encoder: String,
    encoder_fingerprint: String,
    recipe: serde_json::Value,
    metrics: serde_json::Value,
}

async fn bytes_of(options: &JsValue, key: &str) -> Result<Rc<Vec<u8>>, JsError> {
    let v = js_sys::Reflect::get(options, &key.into()).unwrap_or(JsValue::UNDEFINED);
    if let Some(url) = v.as_string() {
        return Ok(Rc::new(fetch_bytes(&url).await?));
    }
    if v.is_instance_of::<Uint8Array>() {
        return Ok(Rc::new(Uint8Array::from(v).to_vec()));
    }
    if v.is_undefined() {
        return Err(err(format!(
            "loadTextModel needs `{key}` (a URL or a Uint8Array)"
        )));
    }
    Err(err(format!(
        "loadTextModel: `{key}` must be a URL string or a Uint8Array"
    )))
}

/// Loads a text bundle and the sentence encoder it was trained on (`config.json`,
/// `model.safetensors`, `tokenizer.json`), each a URL or its bytes.
#[wasm_bindgen(js_name = loadTextModel, unchecked_return_type = "TextModelInfo")]
pub async fn load_text_model(
    #[wasm_bindgen(unchecked_param_type = "TextModelSources")] sources: JsValue,
) -> Result<JsValue, JsError> {
    device()?;
    reject_unknown_keys(
        &sources,
        &["bundle", "config", "weights", "tokenizer"],
        "loadTextModel",
    )?;
    let source = TextSource {
        bundle: bytes_of(&sources, "bundle").await?,
        config: bytes_of(&sources, "config").await?,
        weights: bytes_of(&sources, "weights").await?,
        tokenizer: bytes_of(&sources, "tokenizer").await?,
    };
    to_js(&install(source).await?)
}

fn report(text: &JsValue, call: &str) -> Result<String, JsError> {
    let text = text
        .as_string()
        .ok_or_else(|| err(format!("{call} takes the report text as a string")))?;
    explain::prepare(&text).map_err(err)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportPrediction {
    probabilities: Vec<f32>,
    predicted: usize,
    label: String,
    class_names: Vec<String>,
}

/// Class probabilities of one report.
#[wasm_bindgen(js_name = classifyReport, unchecked_return_type = "ReportPrediction")]
pub async fn classify_report(
    #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
) -> Result<JsValue, JsError> {
    let text = report(&text, "classifyReport")?;
    let (bundle, encoder, mlp) = loaded()?;
    let device = device()?;
    let probabilities = explain::classify(&encoder, &mlp, &text, &device)
        .await
        .map_err(err)?;
    let predicted = argmax(&probabilities);
    to_js(&ReportPrediction {
        probabilities,
        predicted,
        label: bundle.header.class_names[predicted].clone(),
        class_names: bundle.header.class_names.clone(),
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExplainOptions {
    class: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProbeOptions {
    max_radius: Option<f32>,
    max_words: Option<usize>,
}

fn options<T: Default + for<'de> Deserialize<'de>>(
    value: JsValue,
    allowed: &[&str],
    call: &str,
) -> Result<T, JsError> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    reject_unknown_keys(&value, allowed, call)?;
    serde_wasm_bindgen::from_value(value).map_err(|e| err(format!("invalid {call} options: {e}")))
}

/// Per-word importance (gradient × input on the word-piece vectors) for the predicted class
/// or `options.class`.
#[wasm_bindgen(js_name = explainReport, unchecked_return_type = "ReportExplanation")]
pub async fn explain_report(
    #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
    #[wasm_bindgen(unchecked_param_type = "ExplainOptions | undefined")] opts: JsValue,
) -> Result<JsValue, JsError> {
    let text = report(&text, "explainReport")?;
    let o: ExplainOptions = options(opts, &["class"], "explainReport")?;
    let (bundle, encoder, mlp) = loaded()?;
    let device = device()?;
    let x = explain::explain(&encoder, &mlp, &text, o.class, &device)
        .await
        .map_err(err)?;
    let mut v = serde_json::to_value(&x).map_err(err)?;
    v["label"] = bundle.header.class_names[x.class].clone().into();
    to_js(&v)
}

/// How far the report is from another prediction: the smallest embedding perturbation and
/// the fewest important words whose removal flip it.
#[wasm_bindgen(js_name = probeReport, unchecked_return_type = "ReportProbe")]
pub async fn probe_report(
    #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
    #[wasm_bindgen(unchecked_param_type = "ProbeOptions | undefined")] opts: JsValue,
) -> Result<JsValue, JsError> {
    let text = report(&text, "probeReport")?;
    let o: ProbeOptions = options(opts, &["maxRadius", "maxWords"], "probeReport")?;
    let mut config = ProbeConfig::default();
    if let Some(r) = o.max_radius {
        if !(r.is_finite() && r > 0.0 && r <= 10.0) {
            return Err(err(format!("maxRadius must be in (0, 10], got {r}")));
        }
        config.max_radius = r;
    }
    if let Some(w) = o.max_words {
        if w > 200 {
            return Err(err(format!("maxWords must be at most 200, got {w}")));
        }
        config.max_words = w;
    }
    crate::progress::begin(None);
    let (bundle, encoder, mlp) = loaded()?;
    let device = device()?;
    let p = explain::probe(&encoder, &mlp, &text, &config, &device)
        .await
        .map_err(err)?;
    let names = &bundle.header.class_names;
    let mut v = serde_json::to_value(&p).map_err(err)?;
    v["label"] = names[p.predicted].clone().into();
    if let Some(f) = &p.embedding {
        v["embedding"]["label"] = names[f.class].clone().into();
    }
    if let Some(f) = &p.removal {
        v["removal"]["label"] = names[f.class].clone().into();
    }
    to_js(&v)
}

/// Unit sentence embeddings of reports (the encoder of the loaded text model, the same
/// windowing and pooling as natively).
#[wasm_bindgen(js_name = embedReports, unchecked_return_type = "number[][]")]
pub async fn embed_reports(
    #[wasm_bindgen(unchecked_param_type = "string[]")] texts: JsValue,
) -> Result<JsValue, JsError> {
    if !js_sys::Array::is_array(&texts) {
        return Err(err("embedReports takes an array of strings"));
    }
    let mut prepared = Vec::new();
    for (i, t) in js_sys::Array::from(&texts).iter().enumerate() {
        prepared.push(report(&t, &format!("embedReports: texts[{i}]"))?);
    }
    if prepared.len() > 1000 {
        return Err(err("embedReports takes at most 1000 texts per call"));
    }
    let (_, encoder, _) = loaded()?;
    let device = device()?;
    let refs: Vec<&str> = prepared.iter().map(String::as_str).collect();
    let v = encoder
        .embed(&refs, 8192, &device, &mut |_, _| {})
        .await
        .map_err(err)?;
    to_js(&v)
}
