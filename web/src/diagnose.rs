//! `diagnose({ samples })`: SIA model diagnosis on a small batch, client-side, with the same
//! core code as `rampart diagnose`.

use rampart_core::data::ImageDataset;
use rampart_core::eval::diagnose::{DiagnoseAttack, DiagnoseSettings, diagnose as run_diagnosis};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::api::reject_unknown_keys;
use crate::{check_pixels, device, err, loaded, to_js};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
export interface DiagnoseOptions {
  samples: { pixels: number[]; label: number }[];
  attributes?: string[]; eps?: number; steps?: number; attributeStep?: number;
  loss?: "ce" | "cw"; sweepPoints?: number; seed?: number;
  /** Return the adversarial images of the examples (for a gallery). */
  images?: boolean;
}
export interface Diagnosis {
  attributes: string[]; eps: number; steps: number; samples: number; clean_correct: number;
  success_rate: number;
  overall: { attacks: number; mass: number[]; dominant: number[] };
  per_class: { attacks: number; mass: number[]; dominant: number[] }[];
  class_names: string[];
  sweeps: { attribute: string; values: number[]; accuracy: number[] }[];
  examples: { index: number; label: number; predicted: number; coefficients: number[]; adversarial?: number[] }[];
}
"#;

#[derive(Deserialize)]
pub(crate) struct Sample {
    pixels: Vec<f32>,
    label: usize,
}

/// The samples as a dataset for the loaded bundle, each checked (pixels, label).
pub(crate) fn samples_dataset(
    samples: &[Sample],
    header: &rampart_core::bundle::BundleHeader,
) -> Result<ImageDataset, JsError> {
    let k = header.class_names.len();
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        check_pixels(&s.pixels, header).map_err(|e| {
            err(format!(
                "samples[{i}]: {}",
                js_sys::Error::from(JsValue::from(e)).message()
            ))
        })?;
        if s.label >= k {
            return Err(err(format!(
                "samples[{i}].label {} is out of range: the model has {k} classes",
                s.label
            )));
        }
        images.extend_from_slice(&s.pixels);
        labels.push(s.label);
    }
    ImageDataset::new(
        images,
        labels,
        header.model.input_shape(),
        header.class_names.clone(),
    )
    .map_err(err)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DiagnoseOptions {
    samples: Vec<Sample>,
    attributes: Option<Vec<String>>,
    #[serde(default)]
    eps: f32,
    #[serde(default = "fifty")]
    steps: usize,
    #[serde(default = "five_percent")]
    attribute_step: f32,
    #[serde(default = "ce")]
    loss: String,
    #[serde(default)]
    sweep_points: usize,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    images: bool,
}

fn fifty() -> usize {
    50
}
fn five_percent() -> f32 {
    0.05
}
fn ce() -> String {
    "ce".into()
}

/// Runs SIA on `samples` with the loaded image bundle; returns the attribute histograms.
#[wasm_bindgen(js_name = diagnose, unchecked_return_type = "Diagnosis")]
pub async fn diagnose(
    #[wasm_bindgen(unchecked_param_type = "DiagnoseOptions")] options: JsValue,
) -> Result<JsValue, JsError> {
    reject_unknown_keys(
        &options,
        &[
            "samples",
            "attributes",
            "eps",
            "steps",
            "attributeStep",
            "loss",
            "sweepPoints",
            "seed",
            "images",
        ],
        "diagnose",
    )?;
    let o: DiagnoseOptions = serde_wasm_bindgen::from_value(options)
        .map_err(|e| err(format!("invalid diagnose options: {e}")))?;
    crate::progress::begin(None);
    let device = device()?;
    let loaded = loaded()?;
    let (header, model) = &*loaded;
    if o.samples.is_empty() || o.samples.len() > 256 {
        return Err(err("diagnose takes 1 to 256 samples"));
    }
    // A browser tab runs on one thread: bounds tighter than the core's.
    if o.steps > 1000 {
        return Err(err(format!("steps must be in 1..=1000, got {}", o.steps)));
    }
    let config = DiagnoseAttack {
        attributes: o.attributes.clone().unwrap_or_default(),
        steps: o.steps,
        attribute_step: o.attribute_step,
        loss: o.loss.parse().map_err(err)?,
    }
    .sia_config(header.model.input_shape()[0])
    .map_err(err)?;
    let data = samples_dataset(&o.samples, header)?;
    let n = data.len();
    let d = run_diagnosis(
        model,
        &data,
        &config,
        &DiagnoseSettings {
            eps: o.eps,
            limit: n,
            batch_size: n,
            sweep_points: o.sweep_points,
            seed: o.seed,
            keep_images: o.images,
        },
        &device,
        &mut |_, _| {},
    )
    .await
    .map_err(err)?;
    to_js(&d)
}
