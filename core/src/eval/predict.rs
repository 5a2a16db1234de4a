//! One image at a time: its prediction, and one attack on it with before/after predictions
//! and the perturbation's size. The CLI's `predict` and `attack` and the browser's
//! `classify` and `attack` are these two functions.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;

use crate::attack::AttackSpec;
use crate::attack::spec::check_eps;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::tensor_io::{read_bools, read_floats};

/// Logits, probabilities and the predicted class of one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub logits: Vec<f32>,
    pub probabilities: Vec<f32>,
    pub predicted: usize,
    pub label: String,
}

/// Checks a flat `C×H×W` image against the model's input shape and `[0, 1]`.
pub fn check_pixels(pixels: &[f32], [c, h, w]: [usize; 3]) -> Result<()> {
    let bad = |r: String| Err(Error::invalid("image", r));
    if pixels.len() != c * h * w {
        return bad(format!(
            "pixels has {} values, the model takes {c}×{h}×{w} = {}",
            pixels.len(),
            c * h * w
        ));
    }
    if let Some(i) = pixels.iter().position(|v| !v.is_finite()) {
        return bad(format!("pixels[{i}] is not a finite number"));
    }
    if let Some(i) = pixels.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return bad(format!("pixels[{i}] = {} is outside [0, 1]", pixels[i]));
    }
    Ok(())
}

/// One checked image as a `[1, C, H, W]` tensor.
pub fn image_tensor(pixels: &[f32], shape: [usize; 3], device: &Device) -> Result<Tensor<4>> {
    check_pixels(pixels, shape)?;
    let [c, h, w] = shape;
    Ok(Tensor::from_data(
        TensorData::new(pixels.to_vec(), [1, c, h, w]),
        device,
    ))
}

/// The prediction for a `[1, C, H, W]` image.
pub async fn predict(model: &Model, x: Tensor<4>, class_names: &[String]) -> Result<Prediction> {
    // Models from bundles live on plain (non-autodiff) devices: this is inference.
    let logits = model.forward(x);
    let probabilities = read_floats(softmax(logits.clone(), 1)).await?;
    let logits = read_floats(logits).await?;
    let predicted = crate::argmax(&logits);
    let label = class_names
        .get(predicted)
        .cloned()
        .ok_or_else(|| Error::invalid("model", format!("no name for class {predicted}")))?;
    Ok(Prediction {
        logits,
        probabilities,
        predicted,
        label,
    })
}

/// What to attack: the image, the budget, and whose class it is.
#[derive(Debug, Clone)]
pub struct ImageAttackRequest<'a> {
    pub pixels: &'a [f32],
    pub eps: f32,
    /// The true class; `None`: the model's prediction on the clean image.
    pub label: Option<usize>,
    /// A target class (the spec must be targeted then).
    pub target: Option<usize>,
    pub seed: u64,
}

/// One attack on one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageAttack {
    pub adversarial: Vec<f32>,
    /// `adversarial − pixels`.
    pub perturbation: Vec<f32>,
    pub before: Prediction,
    pub after: Prediction,
    /// Misclassified (untargeted) or classified as the target (targeted).
    pub success: bool,
    pub linf: f32,
    pub l2: f32,
    pub attack: String,
    pub eps: f32,
}

/// Attacks one image with the attack `spec` describes. Validates everything before any
/// tensor work: pixels, ε, the spec, and the classes against the model's.
pub async fn attack_image(
    model: &Model,
    class_names: &[String],
    shape: [usize; 3],
    spec: &AttackSpec,
    request: &ImageAttackRequest<'_>,
    device: &Device,
) -> Result<ImageAttack> {
    check_eps(request.eps)?;
    let k = class_names.len();
    for (name, class) in [("label", request.label), ("target", request.target)] {
        if let Some(c) = class
            && c >= k
        {
            return Err(Error::invalid(
                "attack",
                format!("{name} {c} is out of range: the model has {k} classes"),
            ));
        }
    }
    if spec.targeted != request.target.is_some() {
        return Err(Error::invalid(
            "attack",
            "a targeted attack needs a target, and a target needs a targeted attack",
        ));
    }
    let attack = spec.build()?;
    let x = image_tensor(request.pixels, shape, device)?;
    let before = predict(model, x.clone(), class_names).await?;
    let class = request.target.or(request.label).unwrap_or(before.predicted);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![class as i64], [1]), device);
    let out = attack.run(model, x, labels, &[request.eps], request.seed)?;
    let adversarial = read_floats(out.adversarial.clone()).await?;
    let after = predict(model, out.adversarial, class_names).await?;
    let success = read_bools(out.success)
        .await?
        .first()
        .copied()
        .unwrap_or(false);
    let perturbation: Vec<f32> = adversarial
        .iter()
        .zip(request.pixels)
        .map(|(a, x)| a - x)
        .collect();
    Ok(ImageAttack {
        linf: perturbation.iter().fold(0f32, |m, d| m.max(d.abs())),
        l2: perturbation.iter().map(|d| d * d).sum::<f32>().sqrt(),
        adversarial,
        perturbation,
        before,
        after,
        success,
        attack: attack.name(),
        eps: request.eps,
    })
}
