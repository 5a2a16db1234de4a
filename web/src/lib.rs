//! `rampart-web`: Rampart's JS API. Every entry point is async, reads tensors with
//! asynchronous reads only (synchronous GPU read-backs fail on WebGPU), validates its
//! arguments before touching Burn, and rejects with an `Error` naming what is wrong.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use rampart_core::attack::AttackSpec;
use rampart_core::bundle::{Bundle, BundleHeader};
use rampart_core::eval::predict::{
    ImageAttack, ImageAttackRequest, Prediction, attack_image, image_tensor, predict,
};
use rampart_core::model::Model;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

mod api;
mod diagnose;
mod progress;
mod suite;
mod text;

pub use api::*;
pub use diagnose::*;
pub use progress::{panic_for_testing, set_progress_hook};
pub use text::*;

#[derive(Default)]
struct State {
    /// The WebGPU device, once initialised (the runtime cannot be initialised twice).
    webgpu: Option<Device>,
    active: Option<(Backend, Device)>,
    /// Shared, not cloned, by each call: cloning the header and the model cost a few per cent
    /// of a single-image classify.
    bundle: Option<Rc<(BundleHeader, Model)>>,
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

fn loaded() -> Result<Rc<(BundleHeader, Model)>, JsError> {
    STATE
        .with(|s| s.borrow().bundle.clone())
        .ok_or_else(|| err("no bundle loaded: call loadBundle() first"))
}

/// Checks a flat image against the loaded model's input shape and `[0, 1]`.
fn check_pixels(pixels: &[f32], header: &BundleHeader) -> Result<(), JsError> {
    rampart_core::eval::predict::check_pixels(pixels, header.model.input_shape()).map_err(err)
}

/// The prediction for one checked image.
async fn classify_pixels(
    model: &Model,
    pixels: &[f32],
    header: &BundleHeader,
    device: &Device,
) -> Result<Prediction, JsError> {
    let x = image_tensor(pixels, header.model.input_shape(), device).map_err(err)?;
    predict(model, x, &header.class_names).await.map_err(err)
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
    /// The core's attack spec; the core validates it with the CLI's rules.
    fn spec(&self) -> Result<AttackSpec, JsError> {
        Ok(AttackSpec {
            method: self.method.parse().map_err(err)?,
            steps: self.steps,
            step_size: self.step_size,
            restarts: self.restarts,
            loss: self.loss.parse().map_err(err)?,
            random_start: self.random_start,
            targeted: self.target.is_some(),
        })
    }
}

async fn run_attack(options: AttackOptions) -> Result<ImageAttack, JsError> {
    let device = device()?;
    let loaded = loaded()?;
    let (header, model) = &*loaded;
    let spec = options.spec()?;
    progress::begin(Some(spec.planned_steps()));
    let request = ImageAttackRequest {
        pixels: &options.pixels,
        eps: options.eps,
        label: options.label,
        target: options.target,
        seed: options.seed,
    };
    attack_image(
        model,
        &header.class_names,
        header.model.input_shape(),
        &spec,
        &request,
        &device,
    )
    .await
    .map_err(err)
}

fn install_bundle(bytes: &[u8]) -> Result<BundleHeader, JsError> {
    let device = device()?;
    let bundle = Bundle::from_bytes(bytes).map_err(err)?;
    let model = bundle.model(&device).map_err(err)?;
    let header = bundle.header.clone();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.bundle = Some(Rc::new((header.clone(), model)));
        s.source = Some(bundle);
    });
    Ok(header)
}
