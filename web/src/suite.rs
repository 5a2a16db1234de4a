//! `evaluateSuite({ samples, eps })`: the robustness suite (worst case per sample over the
//! ensemble, AutoAttack's protocol) and its sanity checks — the ε–accuracy curve among them —
//! on a small batch, client-side, with the same core code as `rampart eval --suite`.

use rampart_core::eval::suite::{Suite, SuiteConfig, run_suite};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::api::reject_unknown_keys;
use crate::diagnose::{Sample, samples_dataset};
use crate::{device, err, loaded, to_js};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
export interface SuiteOptions {
  samples: { pixels: number[]; label: number }[];
  eps: number;
  /** "quick" (APGD-CE, Square; the default), "autoattack" or "adaptive". */
  suite?: string; apgdSteps?: number; squareQueries?: number;
  /** Run the sanity checks (default true): ε curve, steps/restarts, black box, zero gradients. */
  sanity?: boolean; seed?: number;
}
export interface SuiteReport {
  suite: string; eps: number; samples: number; clean_accuracy: number; robust_accuracy: number;
  stages: { attack: string; broke: number; robust_accuracy: number }[];
  outcome: string[]; skipped: string[];
  sanity: null | {
    eps_curve: [number, number][]; pgd10_accuracy: number; pgd50x3_accuracy: number;
    black_box_only: number; zero_gradient_fraction: number; flags: string[];
  };
}
"#;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SuiteOptions {
    samples: Vec<Sample>,
    eps: f32,
    suite: Option<String>,
    apgd_steps: Option<usize>,
    square_queries: Option<usize>,
    sanity: Option<bool>,
    #[serde(default)]
    seed: u64,
}

/// Runs the suite on `samples` with the loaded image bundle.
#[wasm_bindgen(js_name = evaluateSuite, unchecked_return_type = "SuiteReport")]
pub async fn evaluate_suite(
    #[wasm_bindgen(unchecked_param_type = "SuiteOptions")] options: JsValue,
) -> Result<JsValue, JsError> {
    reject_unknown_keys(
        &options,
        &[
            "samples",
            "eps",
            "suite",
            "apgdSteps",
            "squareQueries",
            "sanity",
            "seed",
        ],
        "evaluateSuite",
    )?;
    let o: SuiteOptions = serde_wasm_bindgen::from_value(options)
        .map_err(|e| err(format!("invalid suite options: {e}")))?;
    crate::progress::begin(None);
    let device = device()?;
    let loaded = loaded()?;
    let (header, model) = &*loaded;
    if o.samples.is_empty() || o.samples.len() > 256 {
        return Err(err("evaluateSuite takes 1 to 256 samples"));
    }
    let suite = Suite::parse(o.suite.as_deref().unwrap_or("quick")).map_err(err)?;
    let defaults = SuiteConfig::new(suite, o.eps);
    let config = SuiteConfig {
        apgd_steps: o.apgd_steps.unwrap_or(defaults.apgd_steps),
        square_queries: o.square_queries.unwrap_or(defaults.square_queries),
        sanity: o.sanity.unwrap_or(true),
        batch_size: o.samples.len(),
        seed: o.seed,
        ..defaults
    };
    config.validate().map_err(err)?;
    if config.apgd_steps > 1000 || config.square_queries > 10_000 {
        return Err(err(
            "apgdSteps must be at most 1000 and squareQueries at most 10000",
        ));
    }
    let data = samples_dataset(&o.samples, header)?;
    let report = run_suite(model, &data, &config, &device, &mut |_, _| {})
        .await
        .map_err(err)?;
    to_js(&report)
}
