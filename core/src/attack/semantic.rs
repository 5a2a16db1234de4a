//! The semantic attribute space of SIA (semantic image attack): differentiable image transforms,
//! each with a natural range and the identity at 0, and the joint attribute + pixel attack.
//!
//! SIA edits a generator's latent attributes; Rampart's attributes are image transforms, so
//! that the attack runs on any image classifier, natively and in the browser. Composition
//! order (fixed): one bilinear resampling for all geometric attributes (rotation, scale,
//! shear and translation about the image centre, plus an elastic displacement field), then
//! stroke thickness, blur, and the photometric attributes (brightness, contrast, gamma,
//! saturation, hue), then clipping to `[0, 1]`. Geometric parameters describe the *sampling*
//! map (output pixel → source position); outside the image is 0.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Attack, AttackLoss, AttackOutput, check_inputs, objective_per_sample, success};
use crate::error::{Error, Result};
use crate::model::Model;

/// One semantic attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attribute {
    /// Rotation of the sampling map, radians.
    Rotation,
    /// Horizontal shift, pixels.
    TranslateX,
    /// Vertical shift, pixels.
    TranslateY,
    /// Zoom: the sampling map is divided by 1 + a.
    Scale,
    /// Horizontal shear of the sampling map.
    Shear,
    /// Weight of a fixed smooth random displacement field of 2 px amplitude.
    Elastic,
    /// Soft dilation (a > 0) or erosion (a < 0) by a 3×3 max/min filter.
    Thickness,
    /// Mix weight of a 5×5 Gaussian blur (σ = 1 px).
    Blur,
    /// Added to every pixel.
    Brightness,
    /// Deviation from the image mean scaled by 1 + a.
    Contrast,
    /// Pixels raised to the power e^a.
    Gamma,
    /// Colour only: chroma scaled by 1 + a.
    Saturation,
    /// Colour only: hue rotated by a radians (YIQ).
    Hue,
}

impl Attribute {
    pub const ALL: [Attribute; 13] = [
        Attribute::Rotation,
        Attribute::TranslateX,
        Attribute::TranslateY,
        Attribute::Scale,
        Attribute::Shear,
        Attribute::Elastic,
        Attribute::Thickness,
        Attribute::Blur,
        Attribute::Brightness,
        Attribute::Contrast,
        Attribute::Gamma,
        Attribute::Saturation,
        Attribute::Hue,
    ];

    /// The natural range `[lo, hi]` (0 inside, the identity).
    pub fn range(self) -> (f32, f32) {
        use Attribute::*;
        match self {
            Rotation => (-std::f32::consts::FRAC_PI_6, std::f32::consts::FRAC_PI_6),
            TranslateX | TranslateY => (-3.0, 3.0),
            Scale => (-0.2, 0.2),
            Shear => (-0.3, 0.3),
            Elastic => (0.0, 1.0),
            Thickness => (-1.0, 1.0),
            Blur => (0.0, 1.0),
            Brightness => (-0.3, 0.3),
            Contrast => (-0.5, 0.5),
            Gamma => (-0.7, 0.7),
            Saturation => (-0.5, 0.5),
            Hue => (-0.5, 0.5),
        }
    }

    pub fn name(self) -> &'static str {
        use Attribute::*;
        match self {
            Rotation => "rotation",
            TranslateX => "translate-x",
            TranslateY => "translate-y",
            Scale => "scale",
            Shear => "shear",
            Elastic => "elastic",
            Thickness => "thickness",
            Blur => "blur",
            Brightness => "brightness",
            Contrast => "contrast",
            Gamma => "gamma",
            Saturation => "saturation",
            Hue => "hue",
        }
    }

    pub fn colour_only(self) -> bool {
        matches!(self, Attribute::Saturation | Attribute::Hue)
    }

    /// Every attribute that applies to images with `channels` channels.
    pub fn all_for(channels: usize) -> Vec<Attribute> {
        Self::ALL
            .into_iter()
            .filter(|a| channels == 3 || !a.colour_only())
            .collect()
    }
}

/// A set of attributes in a fixed order: the columns of the coefficient matrix `[N, K]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeSpace {
    pub attributes: Vec<Attribute>,
}

impl std::str::FromStr for Attribute {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Attribute::ALL
            .into_iter()
            .find(|a| a.name() == name.trim())
            .ok_or_else(|| {
                let all: Vec<&str> = Attribute::ALL.iter().map(|a| a.name()).collect();
                Error::invalid(
                    "attribute",
                    format!("unknown attribute '{name}' (one of {})", all.join(", ")),
                )
            })
    }
}

impl AttributeSpace {
    pub fn new(attributes: Vec<Attribute>, channels: usize) -> Result<Self> {
        if attributes.is_empty() {
            return Err(Error::invalid(
                "attribute space",
                "needs at least one attribute",
            ));
        }
        for (i, a) in attributes.iter().enumerate() {
            if a.colour_only() && channels != 3 {
                return Err(Error::invalid(
                    "attribute space",
                    format!(
                        "{} needs colour images, these have {channels} channel(s)",
                        a.name()
                    ),
                ));
            }
            if attributes[..i].contains(a) {
                return Err(Error::invalid(
                    "attribute space",
                    format!("{} is listed twice", a.name()),
                ));
            }
        }
        if channels != 1 && channels != 3 {
            return Err(Error::invalid(
                "attribute space",
                format!("images need 1 or 3 channels, got {channels}"),
            ));
        }
        Ok(Self { attributes })
    }

    pub fn len(&self) -> usize {
        self.attributes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }

    pub fn column(&self, a: Attribute) -> Option<usize> {
        self.attributes.iter().position(|&b| b == a)
    }

    /// Lower and upper bounds as `[1, K]` rows.
    pub fn bounds(&self, device: &burn::tensor::Device) -> (Tensor<2>, Tensor<2>) {
        let k = self.len();
        let lo: Vec<f32> = self.attributes.iter().map(|a| a.range().0).collect();
        let hi: Vec<f32> = self.attributes.iter().map(|a| a.range().1).collect();
        (
            Tensor::from_data(TensorData::new(lo, [1, k]), device),
            Tensor::from_data(TensorData::new(hi, [1, k]), device),
        )
    }

    /// Coefficients drawn uniformly from each attribute's range scaled by `scale`
    /// (`[N, K]`), from `seed` on the host: random attribute jitter.
    pub fn random_coefficients(
        &self,
        n: usize,
        scale: f32,
        seed: u64,
        device: &burn::tensor::Device,
    ) -> Tensor<2> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let values: Vec<f32> = (0..n)
            .flat_map(|_| {
                self.attributes
                    .iter()
                    .map(|a| a.range())
                    .collect::<Vec<_>>()
            })
            .map(|(lo, hi)| scale * rng.random_range(lo..=hi))
            .collect();
        Tensor::from_data(TensorData::new(values, [n, self.len()]), device)
    }

    /// Applies the transforms with coefficients `coef` (`[N, K]`) to `x` (`[N, C, H, W]`, in
    /// `[0, 1]`). `field` is the elastic displacement (see [`elastic_field`]); it is needed
    /// only when the space has [`Attribute::Elastic`].
    pub fn apply(&self, x: Tensor<4>, coef: Tensor<2>, field: Option<&Tensor<4>>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let col = |a: Attribute| {
            self.column(a)
                .map(|i| coef.clone().slice([0..n, i..i + 1]).reshape([n, 1, 1, 1]))
        };
        let mut x = x;
        // Geometry: one resampling.
        let geometric = [
            Attribute::Rotation,
            Attribute::TranslateX,
            Attribute::TranslateY,
            Attribute::Scale,
            Attribute::Shear,
            Attribute::Elastic,
        ];
        if geometric.iter().any(|&a| self.column(a).is_some()) {
            let device = x.device();
            let cx = (w as f32 - 1.0) / 2.0;
            let cy = (h as f32 - 1.0) / 2.0;
            let u = Tensor::<1, Int>::arange(0..w as i64, &device)
                .float()
                .reshape([1, 1, 1, w])
                - cx;
            let v = Tensor::<1, Int>::arange(0..h as i64, &device)
                .float()
                .reshape([1, 1, h, 1])
                - cy;
            let zero = || Tensor::<4>::zeros([n, 1, 1, 1], &device);
            let theta = col(Attribute::Rotation).unwrap_or_else(zero);
            let shear = col(Attribute::Shear).unwrap_or_else(zero);
            let zoom = col(Attribute::Scale).unwrap_or_else(zero) + 1.0;
            let tx = col(Attribute::TranslateX).unwrap_or_else(zero);
            let ty = col(Attribute::TranslateY).unwrap_or_else(zero);
            let (cos, sin) = (theta.clone().cos(), theta.sin());
            // Sheared, rotated, zoomed, shifted: [n, 1, h, w] source positions.
            let us = u.clone() + v.clone() * shear;
            let mut su =
                (cos.clone() * us.clone() - sin.clone() * v.clone()) / zoom.clone() + cx - tx;
            let mut sv = (sin * us + cos * v) / zoom + cy - ty;
            if let (Some(e), Some(f)) = (col(Attribute::Elastic), field) {
                su = su + f.clone().slice([0..n, 0..1, 0..h, 0..w]) * e.clone();
                sv = sv + f.clone().slice([0..n, 1..2, 0..h, 0..w]) * e;
            }
            x = bilinear(x, su, sv);
        }
        if let Some(t) = col(Attribute::Thickness) {
            let dilated = max3(x.clone());
            let eroded = max3(x.clone().neg()).neg();
            x = x.clone()
                + t.clone().clamp_min(0.0) * (dilated - x.clone())
                + t.neg().clamp_min(0.0) * (eroded - x);
        }
        if let Some(b) = col(Attribute::Blur) {
            let blurred = gaussian5(x.clone());
            x = x.clone() + b * (blurred - x);
        }
        if let Some(b) = col(Attribute::Brightness) {
            x = x + b;
        }
        if let Some(k) = col(Attribute::Contrast) {
            let mean = x.clone().mean_dim(2).mean_dim(3);
            x = (x - mean.clone()) * (k + 1.0) + mean;
        }
        if let Some(g) = col(Attribute::Gamma) {
            x = x.clamp(1e-4, 1.0).powf(g.exp());
        }
        if c == 3
            && (self.column(Attribute::Saturation).is_some()
                || self.column(Attribute::Hue).is_some())
        {
            x = colour(x, col(Attribute::Saturation), col(Attribute::Hue));
        }
        x.clamp(0.0, 1.0)
    }
}

/// Saturation and hue in YIQ: luma Y kept, chroma (I, Q) scaled by 1 + s and rotated by h.
fn colour(x: Tensor<4>, s: Option<Tensor<4>>, hue: Option<Tensor<4>>) -> Tensor<4> {
    let [n, _, h, w] = x.dims();
    let ch = |k: usize| x.clone().slice([0..n, k..k + 1, 0..h, 0..w]);
    let (r, g, b) = (ch(0), ch(1), ch(2));
    let i0 = r.clone() * 0.596 - g.clone() * 0.274 - b.clone() * 0.322;
    let q0 = r.clone() * 0.211 - g.clone() * 0.523 + b.clone() * 0.312;
    let (mut i, mut q) = (i0.clone(), q0.clone());
    if let Some(s) = s {
        i = i * (s.clone() + 1.0);
        q = q * (s + 1.0);
    }
    if let Some(t) = hue {
        let (c, sn) = (t.clone().cos(), t.sin());
        let i2 = i.clone() * c.clone() - q.clone() * sn.clone();
        q = i * sn + q * c;
        i = i2;
    }
    // Only the change of chroma goes back through the inverse, so 0 is exactly the identity.
    let (di, dq) = (i - i0, q - q0);
    let r = r + di.clone() * 0.956 + dq.clone() * 0.621;
    let g = g - di.clone() * 0.272 - dq.clone() * 0.647;
    let b = b - di * 1.106 + dq * 1.703;
    Tensor::cat(vec![r, g, b], 1)
}

/// 3×3 max filter (stride 1, same size; the border repeats nothing: outside counts as −∞).
fn max3(x: Tensor<4>) -> Tensor<4> {
    let options = burn::tensor::ops::MaxPoolOptions::new([3, 3])
        .with_stride([1, 1])
        .with_padding([1, 1]);
    burn::tensor::module::max_pool2d(x, options)
}

/// Depthwise 5×5 Gaussian blur, σ = 1 px, zero padding.
fn gaussian5(x: Tensor<4>) -> Tensor<4> {
    let c = x.dims()[1];
    let g: Vec<f32> = (-2..=2)
        .map(|i: i32| (-(i * i) as f32 / 2.0).exp())
        .collect();
    let sum: f32 = g.iter().sum();
    let mut k = Vec::with_capacity(c * 25);
    for _ in 0..c {
        for a in &g {
            for b in &g {
                k.push(a * b / (sum * sum));
            }
        }
    }
    let weight = Tensor::<4>::from_data(TensorData::new(k, [c, 1, 5, 5]), &x.device());
    conv2d(x, weight, None, ConvOptions::new([1, 1], [2, 2], [1, 1], c))
}

/// Bilinear sampling of `x` at source positions `su`, `sv` (pixels, `[N, 1, H, W]`); zero
/// outside the image. Differentiable in `x` and in the positions (through the weights).
pub fn bilinear(x: Tensor<4>, su: Tensor<4>, sv: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let u0 = su.clone().floor();
    let v0 = sv.clone().floor();
    let fu = su - u0.clone();
    let fv = sv - v0.clone();
    let flat = x.reshape([n, c, h * w]);
    let corner = |du: f32, dv: f32| {
        let uu = u0.clone() + du;
        let vv = v0.clone() + dv;
        let inside: Tensor<4, Bool> = uu
            .clone()
            .greater_equal_elem(0.0)
            .bool_and(uu.clone().lower_equal_elem(w as f32 - 1.0))
            .bool_and(vv.clone().greater_equal_elem(0.0))
            .bool_and(vv.clone().lower_equal_elem(h as f32 - 1.0));
        let index = (vv.clamp(0.0, h as f32 - 1.0) * w as f32 + uu.clamp(0.0, w as f32 - 1.0))
            .int()
            .reshape([n, 1, h * w])
            .expand([n, c, h * w]);
        let values = flat.clone().gather(2, index).reshape([n, c, h, w]);
        values * inside.float()
    };
    let (wu1, wv1) = (fu.clone(), fv.clone());
    let (wu0, wv0) = (fu.neg() + 1.0, fv.neg() + 1.0);
    corner(0.0, 0.0) * (wu0.clone() * wv0.clone())
        + corner(1.0, 0.0) * (wu1.clone() * wv0)
        + corner(0.0, 1.0) * (wu0 * wv1.clone())
        + corner(1.0, 1.0) * (wu1 * wv1)
}

/// A smooth random displacement field `[N, 2, H, W]` (x and y, max |value| 2 px per image):
/// Gaussian values on a 4×4 grid, bilinearly upsampled; drawn on the host from `seed`.
pub fn elastic_field(
    n: usize,
    h: usize,
    w: usize,
    seed: u64,
    device: &burn::tensor::Device,
) -> Tensor<4> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let g = 4usize;
    let mut out = vec![0f32; n * 2 * h * w];
    for img in 0..n {
        for axis in 0..2 {
            let grid: Vec<f32> = (0..g * g)
                .map(|_| {
                    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
                    let u2: f32 = rng.random_range(0.0..1.0);
                    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                })
                .collect();
            let base = (img * 2 + axis) * h * w;
            let mut peak = 1e-6f32;
            for i in 0..h {
                for j in 0..w {
                    let gy = i as f32 / (h.max(2) - 1) as f32 * (g - 1) as f32;
                    let gx = j as f32 / (w.max(2) - 1) as f32 * (g - 1) as f32;
                    let (y0, x0) = (
                        (gy.floor() as usize).min(g - 2),
                        (gx.floor() as usize).min(g - 2),
                    );
                    let (fy, fx) = (gy - y0 as f32, gx - x0 as f32);
                    let at = |y: usize, x: usize| grid[y * g + x];
                    let v = at(y0, x0) * (1.0 - fy) * (1.0 - fx)
                        + at(y0, x0 + 1) * (1.0 - fy) * fx
                        + at(y0 + 1, x0) * fy * (1.0 - fx)
                        + at(y0 + 1, x0 + 1) * fy * fx;
                    out[base + i * w + j] = v;
                    peak = peak.max(v.abs());
                }
            }
            for v in &mut out[base..base + h * w] {
                *v *= 2.0 / peak;
            }
        }
    }
    Tensor::from_data(TensorData::new(out, [n, 2, h, w]), device)
}

/// Settings of the SIA attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiaConfig {
    pub attributes: Vec<Attribute>,
    pub steps: usize,
    /// Largest attribute step per iteration, as a fraction of its range: each sample's
    /// range-normalised gradient is scaled so that its largest entry makes this step.
    pub attribute_step: f32,
    /// Pixel step per iteration as a multiple of ε / steps (L∞, signed gradient).
    pub pixel_step: f32,
    pub loss: AttackLoss,
    /// Freeze a sample once it is misclassified.
    pub early_stop: bool,
    /// Attribute bounds as a fraction of each natural range (1: the whole range).
    #[serde(default = "one")]
    pub range_scale: f32,
}

fn one() -> f32 {
    1.0
}

impl SiaConfig {
    /// Every attribute for `channels`, 50 steps of 5 % of the range, pixel steps 2.5·ε/steps.
    pub fn new(channels: usize) -> Self {
        Self {
            attributes: Attribute::all_for(channels),
            steps: 50,
            attribute_step: 0.05,
            pixel_step: 2.5,
            loss: AttackLoss::CrossEntropy,
            early_stop: true,
            range_scale: 1.0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 || self.steps > 10_000 {
            return Err(Error::invalid("sia", "steps must be in 1..=10000"));
        }
        if !(self.attribute_step.is_finite() && self.attribute_step > 0.0) {
            return Err(Error::invalid("sia", "attribute_step must be > 0"));
        }
        if !(self.pixel_step.is_finite() && self.pixel_step >= 0.0) {
            return Err(Error::invalid("sia", "pixel_step must be ≥ 0"));
        }
        if !(self.range_scale > 0.0 && self.range_scale <= 1.0) {
            return Err(Error::invalid("sia", "range_scale must be in (0, 1]"));
        }
        Ok(())
    }
}

/// What SIA returns beyond [`AttackOutput`]: the final coefficients `[N, K]`.
pub struct SiaOutput {
    pub adversarial: Tensor<4>,
    pub success: Tensor<1, Bool>,
    pub coefficients: Tensor<2>,
    pub space: AttributeSpace,
}

/// The semantic image attack: joint gradient ascent on attribute coefficients (normalised
/// steps, clipped to their ranges) and a pixel perturbation (signed steps, L∞ ball of
/// radius ε, possibly 0).
pub struct Sia {
    pub config: SiaConfig,
}

impl Sia {
    pub fn new(config: SiaConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    pub fn run_detailed(
        &self,
        model: &Model,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        eps: &[f32],
        seed: u64,
    ) -> Result<SiaOutput> {
        check_inputs(&images, &labels, eps)?;
        let [n, c, h, w] = images.dims();
        let space = AttributeSpace::new(self.config.attributes.clone(), c)?;
        let model = model.frozen();
        let device = images.device();
        let x = images.detach().without_autodiff();
        let k = space.len();
        let (lo, hi) = space.bounds(&device);
        // Steps are fractions of the natural range; the bounds may be narrower.
        let span = hi.clone() - lo.clone();
        let (lo, hi) = (lo * self.config.range_scale, hi * self.config.range_scale);
        let step_a = span.clone() * self.config.attribute_step;
        let eps_t = super::eps_tensor(eps, &x);
        let step_p = eps_t.clone() * (self.config.pixel_step / self.config.steps as f32);
        let field = space
            .column(Attribute::Elastic)
            .map(|_| elastic_field(n, h, w, seed, &device));
        let mut coef = Tensor::<2>::zeros([n, k], &device);
        let mut delta = Tensor::<4>::zeros([n, c, h, w], &device);
        let mut done = Tensor::<1>::zeros([n], &device).greater_elem(0.5);
        for _ in 0..self.config.steps {
            let a = coef.clone().autodiff().require_grad();
            let d = delta.clone().autodiff().require_grad();
            let adv = (space.apply(x.clone().autodiff(), a.clone(), field.as_ref()) + d.clone())
                .clamp(0.0, 1.0);
            let logits = model.forward(adv);
            let grads = objective_per_sample(logits, labels.clone(), self.config.loss, false)
                .sum()
                .backward();
            let ga = a.grad(&grads).expect("coefficients require a gradient");
            let gd = d.grad(&grads).expect("perturbation requires a gradient");
            crate::progress::tick();
            // Steps in range-normalised units, scaled by the largest of a sample's normalised
            // gradients: the attribute that matters most moves a full step, the others in
            // proportion (sign steps would move every attribute alike and make the
            // diagnosis uninformative).
            let gt = ga * span.clone();
            let top = gt.clone().abs().max_dim(1).clamp_min(1e-12);
            let new_coef = (coef.clone() + gt / top * step_a.clone())
                .max_pair(lo.clone())
                .min_pair(hi.clone());
            let new_delta = (delta.clone() + gd.sign() * step_p.clone())
                .max_pair(eps_t.clone().neg())
                .min_pair(eps_t.clone());
            if self.config.early_stop {
                let keep2 = done.clone().reshape([n, 1]).expand([n, k]);
                let keep4 = done.clone().reshape([n, 1, 1, 1]).expand([n, c, h, w]);
                coef = new_coef.mask_where(keep2, coef);
                delta = new_delta.mask_where(keep4, delta);
                let adv = (space.apply(x.clone(), coef.clone(), field.as_ref()) + delta.clone())
                    .clamp(0.0, 1.0);
                done = done.bool_or(success(&model, adv, labels.clone(), false));
            } else {
                coef = new_coef;
                delta = new_delta;
            }
        }
        let adversarial =
            (space.apply(x.clone(), coef.clone(), field.as_ref()) + delta).clamp(0.0, 1.0);
        let success = success(&model, adversarial.clone(), labels, false);
        Ok(SiaOutput {
            adversarial,
            success,
            coefficients: coef,
            space,
        })
    }
}

impl Attack for Sia {
    fn budget(&self) -> (usize, usize) {
        (self.config.steps, 1)
    }

    fn name(&self) -> String {
        format!("sia-{}", self.config.attributes.len())
    }

    fn run(
        &self,
        model: &Model,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        eps: &[f32],
        seed: u64,
    ) -> Result<AttackOutput> {
        let out = self.run_detailed(model, images, labels, eps, seed)?;
        Ok(AttackOutput {
            adversarial: out.adversarial,
            success: out.success,
        })
    }
}
