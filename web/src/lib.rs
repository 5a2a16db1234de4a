//! `rampart-web`: Rampart's JS API. Every entry point is async, reads tensors with
//! asynchronous reads only (synchronous GPU read-backs fail on WebGPU), validates its
//! arguments before touching Burn, and rejects with an `Error` naming what is wrong.

use std::cell::RefCell;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rampart_core::argmax;
use rampart_core::attack::pgd::StepSize;
use rampart_core::attack::{Attack, AttackLoss, Norm, PgdConfig};
use rampart_core::bundle::{Bundle, BundleHeader};
use rampart_core::model::Model;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

mod api;
mod diagnose;
mod suite;
mod text;

pub use api::*;
pub use diagnose::*;
pub use text::*;

#[derive(Default)]
struct State {
    /// The WebGPU device, once initialised (the runtime cannot be initialised twice).
    webgpu: Option<Device>,
    active: Option<(Backend, Device)>,
    bundle: Option<(BundleHeader, Model)>,
    /// The loaded bundle, kept to move the model when the backend changes.
    source: Option<Bundle>,
    /// The report classifier, if loaded.
    text: Option<text::TextModel>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Webgpu,
    Cpu,
}

fn err(msg: impl std::fmt::Display) -> JsError {
    JsError::new(&msg.to_string())
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(err)
}

fn device() -> Result<Device, JsError> {
    STATE
        .with(|s| s.borrow().active.as_ref().map(|(_, d)| d.clone()))
        .ok_or_else(|| err("Rampart is not initialised: call init() first"))
}

fn loaded() -> Result<(BundleHeader, Model), JsError> {
    STATE
        .with(|s| s.borrow().bundle.clone())
        .ok_or_else(|| err("no bundle loaded: call loadBundle() first"))
}

/// Checks a flat image against the loaded model's input shape and `[0, 1]`.
fn check_pixels(pixels: &[f32], header: &BundleHeader) -> Result<(), JsError> {
    let [c, h, w] = header.model.input_shape();
    if pixels.len() != c * h * w {
        return Err(err(format!(
            "pixels has {} values, the model takes {c}×{h}×{w} = {}",
            pixels.len(),
            c * h * w
        )));
    }
    if let Some(i) = pixels.iter().position(|v| !v.is_finite()) {
        return Err(err(format!("pixels[{i}] is not a finite number")));
    }
    if let Some(i) = pixels.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return Err(err(format!(
            "pixels[{i}] = {} is outside [0, 1]",
            pixels[i]
        )));
    }
    Ok(())
}

fn image(pixels: &[f32], header: &BundleHeader, device: &Device) -> Tensor<4> {
    let [c, h, w] = header.model.input_shape();
    Tensor::from_data(TensorData::new(pixels.to_vec(), [1, c, h, w]), device)
}

async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, JsError> {
    t.into_data_async()
        .await
        .map_err(|e| err(format!("reading a tensor failed: {e:?}")))?
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| err(format!("reading a tensor failed: {e:?}")))
}

#[derive(Serialize)]
struct Prediction {
    logits: Vec<f32>,
    probabilities: Vec<f32>,
    predicted: usize,
    label: String,
}

async fn predict(
    model: &Model,
    x: Tensor<4>,
    header: &BundleHeader,
) -> Result<Prediction, JsError> {
    let logits = model.forward(x);
    let probabilities = read_f32(softmax(logits.clone(), 1)).await?;
    let logits = read_f32(logits).await?;
    let predicted = argmax(&logits);
    Ok(Prediction {
        logits,
        probabilities,
        predicted,
        label: header.class_names[predicted].clone(),
    })
}

/// Options of `attack()`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AttackOptions {
    pixels: Vec<f32>,
    #[serde(default = "default_method")]
    method: String,
    eps: f32,
    #[serde(default = "default_steps")]
    steps: usize,
    step_size: Option<f32>,
    #[serde(default = "one")]
    restarts: usize,
    #[serde(default = "yes")]
    random_start: bool,
    #[serde(default = "default_loss")]
    loss: String,
    /// The true class; defaults to the model's prediction on the clean image.
    label: Option<usize>,
    /// A target class makes the attack targeted.
    target: Option<usize>,
    #[serde(default)]
    seed: u64,
}

fn default_method() -> String {
    "pgd".into()
}
fn default_steps() -> usize {
    20
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_loss() -> String {
    "ce".into()
}

impl AttackOptions {
    fn config(&self, num_classes: usize) -> Result<PgdConfig, JsError> {
        if !self.eps.is_finite() || self.eps < 0.0 {
            return Err(err(format!(
                "eps must be a finite number ≥ 0, got {}",
                self.eps
            )));
        }
        if self.steps == 0 || self.steps > 10_000 {
            return Err(err(format!(
                "steps must be in 1..=10000, got {}",
                self.steps
            )));
        }
        if self.restarts == 0 || self.restarts > 100 {
            return Err(err(format!(
                "restarts must be in 1..=100, got {}",
                self.restarts
            )));
        }
        for (name, class) in [("label", self.label), ("target", self.target)] {
            if let Some(c) = class
                && c >= num_classes
            {
                return Err(err(format!(
                    "{name} {c} is out of range: the model has {num_classes} classes"
                )));
            }
        }
        let mut c = match self.method.as_str() {
            "fgsm" => PgdConfig::fgsm(Norm::Linf),
            "fgsm-l2" => PgdConfig::fgsm(Norm::L2),
            "pgd" => PgdConfig::new(Norm::Linf, self.steps),
            "pgd-l2" => PgdConfig::new(Norm::L2, self.steps),
            other => {
                return Err(err(format!(
                    "unknown method '{other}' (fgsm, fgsm-l2, pgd, pgd-l2)"
                )));
            }
        };
        if self.method.starts_with("pgd") {
            c.random_start = self.random_start;
            c.restarts = self.restarts;
            if let Some(s) = self.step_size {
                c.step_size = StepSize::Absolute(s);
            }
        }
        c.loss = match self.loss.as_str() {
            "ce" => AttackLoss::CrossEntropy,
            "cw" => AttackLoss::CwMargin,
            other => return Err(err(format!("unknown loss '{other}' (ce, cw)"))),
        };
        c.targeted = self.target.is_some();
        c.validate().map_err(err)?;
        Ok(c)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AttackResult {
    adversarial: Vec<f32>,
    perturbation: Vec<f32>,
    before: Prediction,
    after: Prediction,
    success: bool,
    linf: f32,
    l2: f32,
    attack: String,
    eps: f32,
}

async fn run_attack(options: AttackOptions) -> Result<AttackResult, JsError> {
    let device = device()?;
    let (header, model) = loaded()?;
    check_pixels(&options.pixels, &header)?;
    let config = options.config(header.model.num_classes())?;
    let x = image(&options.pixels, &header, &device);
    let before = predict(&model, x.clone(), &header).await?;
    let class = options.target.or(options.label).unwrap_or(before.predicted);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![class as i64], [1]), &device);
    let attack = config.init().map_err(err)?;
    let out = attack
        .run(&model, x, labels, &[options.eps], options.seed)
        .map_err(err)?;
    let adversarial = read_f32(out.adversarial.clone()).await?;
    let after = predict(&model, out.adversarial, &header).await?;
    let success = match options.target {
        Some(t) => after.predicted == t,
        None => after.predicted != class,
    };
    let perturbation: Vec<f32> = adversarial
        .iter()
        .zip(&options.pixels)
        .map(|(a, x)| a - x)
        .collect();
    Ok(AttackResult {
        linf: perturbation.iter().fold(0f32, |m, d| m.max(d.abs())),
        l2: perturbation.iter().map(|d| d * d).sum::<f32>().sqrt(),
        adversarial,
        perturbation,
        before,
        after,
        success,
        attack: attack.name(),
        eps: options.eps,
    })
}

fn install_bundle(bytes: &[u8]) -> Result<BundleHeader, JsError> {
    let device = device()?;
    let bundle = Bundle::from_bytes(bytes).map_err(err)?;
    let model = bundle.model(&device).map_err(err)?;
    let header = bundle.header.clone();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.bundle = Some((header.clone(), model));
        s.source = Some(bundle);
    });
    Ok(header)
}
