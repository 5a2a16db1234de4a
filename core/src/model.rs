//! Classifiers. Every model takes images in `[0, 1]` (normalisation lives inside the model,
//! so attacks and bundles never see normalised pixels) and splits into `features()` and
//! `head()`, because later methods weight features by rows of the final linear layer.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::{conv2d, relu_max_pool2x2};

mod resnet;
pub use resnet::{PreActResNet, ResNetConfig};

/// Per-channel normalisation applied as the model's first operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    pub fn identity(channels: usize) -> Self {
        Self {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    pub(crate) fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        if self.mean.iter().all(|&m| m == 0.0) && self.std.iter().all(|&s| s == 1.0) {
            return x;
        }
        let c = self.mean.len();
        let device = x.device();
        let mean =
            Tensor::<4>::from_data(TensorData::new(self.mean.clone(), [1, c, 1, 1]), &device);
        let inv: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        let inv = Tensor::<4>::from_data(TensorData::new(inv, [1, c, 1, 1]), &device);
        (x - mean) * inv
    }
}

/// How the two convolutions halve the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CnnStyle {
    /// conv5×5 ("same" padding) then 2×2 max-pooling: Madry et al. 2018.
    #[default]
    Madry,
    /// conv4×4 with stride 2 and padding 1, no pooling: the MNIST network of Wong et al. 2020
    /// ("fast is better than free"), 10–15× cheaper per step than Madry's on a CPU.
    Strided,
}

/// The largest image side a model takes.
pub const MAX_SIDE: usize = 4096;
/// The most input channels.
pub const MAX_CHANNELS: usize = 64;
/// The most classes.
pub const MAX_CLASSES: usize = 100_000;
/// The widest layer.
pub const MAX_WIDTH: usize = 1 << 16;
/// The most weights a model may have (2³⁰, 4 GiB as f32): far above every network here, low
/// enough that a mistyped or crafted size is refused instead of exhausting memory.
pub const MAX_WEIGHTS: u64 = 1 << 30;

/// Checks the sizes every architecture shares against the limits above.
pub(crate) fn check_sizes(
    channels: usize,
    height: usize,
    width: usize,
    classes: usize,
    widths: &[usize],
) -> Result<()> {
    let bad = |r: String| Err(Error::invalid("model config", r));
    if channels > MAX_CHANNELS {
        return bad(format!(
            "at most {MAX_CHANNELS} input channels, got {channels}"
        ));
    }
    if height > MAX_SIDE || width > MAX_SIDE {
        return bad(format!(
            "images at most {MAX_SIDE} pixels a side, got {height}×{width}"
        ));
    }
    if classes > MAX_CLASSES {
        return bad(format!("at most {MAX_CLASSES} classes, got {classes}"));
    }
    if let Some(w) = widths.iter().find(|&&w| w > MAX_WIDTH) {
        return bad(format!("layer widths at most {MAX_WIDTH}, got {w}"));
    }
    Ok(())
}

/// Refuses a model with more than [`MAX_WEIGHTS`] weights (`None`: the count overflowed).
pub(crate) fn check_weight_count(count: Option<u64>) -> Result<()> {
    match count {
        Some(n) if n <= MAX_WEIGHTS => Ok(()),
        _ => Err(Error::invalid(
            "model config",
            format!(
                "{} weights is more than the limit of {MAX_WEIGHTS}",
                count.map_or("an overflowing number of".into(), |n| n.to_string())
            ),
        )),
    }
}

/// Two convolutions, each halving the image, then two fully connected layers:
/// conv-`c1`, conv-`c2`, fc-`hidden`, fc-`classes` (ReLU between). `style` says how the
/// convolutions halve the image; Madry's network is (32, 64, 1024), Wong et al.'s (16, 32, 100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CnnConfig {
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    #[serde(default)]
    pub style: CnnStyle,
    pub conv_channels: [usize; 2],
    pub hidden: usize,
    pub num_classes: usize,
    pub normalization: Normalization,
    /// Rounds the input to this many grey levels before anything else: a deliberately
    /// gradient-masking layer (its gradient is zero almost everywhere), for testing and
    /// demonstrating the evaluation's sanity checks. Never use it for a real model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_quantization: Option<u32>,
    /// ANCRA's reverse attention on the penultimate features z (see [`RaMask`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverse_attention: bool,
}

impl CnnConfig {
    /// Madry et al.'s MNIST network (32, 64, 1024).
    pub fn madry(in_channels: usize, height: usize, width: usize, num_classes: usize) -> Self {
        Self {
            in_channels,
            height,
            width,
            style: CnnStyle::Madry,
            conv_channels: [32, 64],
            hidden: 1024,
            num_classes,
            normalization: Normalization::identity(in_channels),
            input_quantization: None,
            reverse_attention: false,
        }
    }

    /// Wong et al.'s fast-AT MNIST network (16, 32, 100), strided convolutions.
    pub fn strided(in_channels: usize, height: usize, width: usize, num_classes: usize) -> Self {
        Self {
            style: CnnStyle::Strided,
            conv_channels: [16, 32],
            hidden: 100,
            ..Self::madry(in_channels, height, width, num_classes)
        }
    }

    pub fn with_widths(mut self, conv_channels: [usize; 2], hidden: usize) -> Self {
        self.conv_channels = conv_channels;
        self.hidden = hidden;
        self
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |reason: &str| Err(Error::invalid("model config", reason));
        check_sizes(
            self.in_channels,
            self.height,
            self.width,
            self.num_classes,
            &[self.conv_channels[0], self.conv_channels[1], self.hidden],
        )?;
        if self.in_channels == 0 || self.num_classes < 2 {
            return bad("needs at least one input channel and two classes");
        }
        if self.height < 4 || self.width < 4 {
            return bad("images must be at least 4×4 (halved twice)");
        }
        if self.conv_channels.contains(&0) || self.hidden == 0 {
            return bad("layer widths must be positive");
        }
        let n = &self.normalization;
        if n.mean.len() != self.in_channels || n.std.len() != self.in_channels {
            return bad("normalisation needs one mean and one std per input channel");
        }
        if n.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad("normalisation std must be positive and finite");
        }
        if self.input_quantization.is_some_and(|q| q < 2) {
            return bad("input quantisation needs at least 2 levels");
        }
        check_weight_count(self.weight_count())
    }

    fn flat_features(&self) -> usize {
        self.conv_channels[1] * (self.height / 4) * (self.width / 4)
    }

    /// Weights of the convolutions and linear layers (biases and buffers not counted), or
    /// `None` when the count overflows.
    fn weight_count(&self) -> Option<u64> {
        let k = match self.style {
            CnnStyle::Madry => 25u64,
            CnnStyle::Strided => 16,
        };
        let [c1, c2] = self.conv_channels.map(|c| c as u64);
        let flat = c2
            .checked_mul((self.height / 4) as u64)?
            .checked_mul((self.width / 4) as u64)?;
        let hidden = self.hidden as u64;
        [
            (self.in_channels as u64).checked_mul(c1)?.checked_mul(k)?,
            c1.checked_mul(c2)?.checked_mul(k)?,
            flat.checked_mul(hidden)?,
            hidden.checked_mul(self.num_classes as u64)?,
        ]
        .into_iter()
        .try_fold(0u64, u64::checked_add)
    }

    pub fn init(&self, device: &Device) -> Result<Cnn> {
        self.validate()?;
        let conv = |i, o| match self.style {
            CnnStyle::Madry => Conv2dConfig::new([i, o], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device),
            CnnStyle::Strided => Conv2dConfig::new([i, o], [4, 4])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
        };
        Ok(Cnn {
            conv1: conv(self.in_channels, self.conv_channels[0]),
            conv2: conv(self.conv_channels[0], self.conv_channels[1]),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(self.flat_features(), self.hidden).init(device),
            fc2: LinearConfig::new(self.hidden, self.num_classes).init(device),
            normalization: self.normalization.clone(),
            style: self.style,
            quantization: self.input_quantization,
            reverse_attention: self.reverse_attention,
        })
    }
}

#[derive(Module, Debug)]
pub struct Cnn {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub pool: MaxPool2d,
    pub fc1: Linear,
    pub fc2: Linear,
    #[module(skip)]
    pub normalization: Normalization,
    #[module(skip)]
    pub style: CnnStyle,
    #[module(skip)]
    pub quantization: Option<u32>,
    #[module(skip)]
    pub reverse_attention: bool,
}

/// Which class's row of the final linear layer gates the features of a reverse-attention
/// (RA) model (ANCRA, arXiv 2310.03358): z' = z ⊙ W[c]. Training uses the true label;
/// evaluation the auxiliary head's prediction `argmax W·z + b`, a hard choice through which
/// no gradient flows — hence the other variants, for adaptive attacks.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a tensor handle, built once per forward pass
pub enum RaMask {
    Labels(Tensor<1, Int>),
    Predicted,
    /// The same class for every sample (an attack can try every mask).
    Class(usize),
    /// The predicted mask forward, the softmax-weighted mask's gradient backward
    /// (BPDA through the argmax, Athalye et al. 2018).
    Bpda,
}

/// Each sample's gating row `W[c]` (`[N, features]`) of the class rows `w` (`[K, features]`)
/// under `mask`, `aux` the auxiliary logits that decide the predicted mask.
pub(crate) fn gate_rows(w: &Tensor<2>, aux: &Tensor<2>, mask: &RaMask) -> Tensor<2> {
    let [k, h] = w.dims();
    let n = aux.dims()[0];
    match mask {
        RaMask::Labels(y) => w.clone().select(0, y.clone()),
        RaMask::Predicted => w
            .clone()
            .select(0, aux.clone().detach().argmax(1).squeeze_dim(1)),
        RaMask::Class(c) => w.clone().slice([*c..*c + 1, 0..h]).expand([n, h]),
        RaMask::Bpda => {
            let hard = aux
                .clone()
                .detach()
                .argmax(1)
                .squeeze_dim::<1>(1)
                .one_hot::<2>(k)
                .float();
            let soft = burn::tensor::activation::softmax(aux.clone(), 1);
            (hard + soft.clone() - soft.detach()).matmul(w.clone())
        }
    }
}

/// Final logits and, for RA models, the auxiliary logits of each RA block.
pub struct RaOutput {
    pub logits: Tensor<2>,
    pub aux: Vec<Tensor<2>>,
}

impl Cnn {
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = match self.quantization {
            Some(q) => {
                let levels = (q - 1) as f32;
                (x * levels).round() / levels
            }
            None => x,
        };
        let x = self.normalization.apply(x);
        let x = match self.style {
            CnnStyle::Madry => {
                let x = relu_max_pool2x2(conv2d(&self.conv1, x));
                relu_max_pool2x2(conv2d(&self.conv2, x))
            }
            CnnStyle::Strided => relu(conv2d(&self.conv2, relu(conv2d(&self.conv1, x)))),
        };
        relu(self.fc1.forward(x.flatten(1, 3)))
    }

    pub fn head(&self, features: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(features)
    }

    /// Logits under an RA mask (plain logits and no auxiliary ones without RA).
    pub fn forward_ra(&self, x: Tensor<4>, mask: &RaMask) -> RaOutput {
        let z = self.features(x);
        if !self.reverse_attention {
            return RaOutput {
                logits: self.head(z),
                aux: Vec::new(),
            };
        }
        let aux = self.head(z.clone());
        let w = self.fc2.weight.val().transpose();
        let gate = gate_rows(&w, &aux, mask);
        RaOutput {
            logits: self.head(z * gate),
            aux: vec![aux],
        }
    }

    /// Weights in the PyTorch twin's names and layouts (`bench/twins.py`).
    pub fn named_weights(&self) -> NamedWeights {
        let mut out = Vec::new();
        for (name, conv) in [("conv1", &self.conv1), ("conv2", &self.conv2)] {
            push_conv(&mut out, name, conv);
        }
        for (name, fc) in [("fc1", &self.fc1), ("fc2", &self.fc2)] {
            push_linear(&mut out, name, fc);
        }
        out
    }
}

pub(crate) fn push_tensor<const D: usize>(out: &mut NamedWeights, name: String, t: Tensor<D>) {
    let shape = t.dims().to_vec();
    let values = t.into_data().try_to_vec::<f32>().expect("f32 weights");
    out.push((name, shape, values));
}

pub(crate) fn push_conv(out: &mut NamedWeights, name: &str, conv: &Conv2d) {
    push_tensor(out, format!("{name}.weight"), conv.weight.val());
    if let Some(b) = &conv.bias {
        push_tensor(out, format!("{name}.bias"), b.val());
    }
}

/// Burn stores linear weights as [in, out]; torch.nn.Linear as [out, in].
pub(crate) fn push_linear(out: &mut NamedWeights, name: &str, fc: &Linear) {
    push_tensor(out, format!("{name}.weight"), fc.weight.val().transpose());
    if let Some(b) = &fc.bias {
        push_tensor(out, format!("{name}.bias"), b.val());
    }
}

/// Burn's generators are process-wide: every initialisation holds this lock, so that a
/// seeded one cannot have its draws interleaved with another thread's.
fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// The architecture of a model, as stored in bundles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "kebab-case")]
pub enum ModelConfig {
    Cnn(CnnConfig),
    PreactResnet18(ResNetConfig),
}

impl ModelConfig {
    /// A model with freshly initialised weights.
    pub fn init(&self, device: &Device) -> Result<Model> {
        let _guard = rng_lock();
        self.init_unlocked(device)
    }

    /// A model whose initial weights depend on `seed` alone.
    pub fn init_seeded(&self, device: &Device, seed: u64) -> Result<Model> {
        let _guard = rng_lock();
        device.seed(seed);
        self.init_unlocked(device)
    }

    fn init_unlocked(&self, device: &Device) -> Result<Model> {
        let model = match self {
            ModelConfig::Cnn(c) => Model::Cnn(c.init(device)?),
            ModelConfig::PreactResnet18(c) => Model::PreactResnet18(c.init(device)?),
        };
        Ok(model.materialize_params())
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            ModelConfig::Cnn(c) => c.validate(),
            ModelConfig::PreactResnet18(c) => c.validate(),
        }
    }

    /// The fewest bytes the weights of this architecture can take (its convolution and linear
    /// weights as f32), so a reader can refuse a file that cannot hold them before it
    /// allocates the model. The configuration must be valid.
    pub fn min_weight_bytes(&self) -> u64 {
        let count = match self {
            ModelConfig::Cnn(c) => c.weight_count(),
            ModelConfig::PreactResnet18(c) => c.weight_count(),
        };
        count.unwrap_or(u64::MAX).saturating_mul(4)
    }

    pub fn reverse_attention(&self) -> bool {
        match self {
            ModelConfig::Cnn(c) => c.reverse_attention,
            ModelConfig::PreactResnet18(c) => c.reverse_attention,
        }
    }

    pub fn set_reverse_attention(&mut self, on: bool) {
        match self {
            ModelConfig::Cnn(c) => c.reverse_attention = on,
            ModelConfig::PreactResnet18(c) => c.reverse_attention = on,
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            ModelConfig::Cnn(c) => c.num_classes,
            ModelConfig::PreactResnet18(c) => c.num_classes,
        }
    }

    /// `[channels, height, width]` of the images the model takes.
    pub fn input_shape(&self) -> [usize; 3] {
        match self {
            ModelConfig::Cnn(c) => [c.in_channels, c.height, c.width],
            ModelConfig::PreactResnet18(c) => [c.in_channels, c.height, c.width],
        }
    }

    /// A short label naming the network's style, e.g. "madry" or "strided".
    pub fn arch_label(&self) -> &'static str {
        match self {
            ModelConfig::Cnn(c) => match c.style {
                CnnStyle::Madry => "madry",
                CnnStyle::Strided => "strided",
            },
            ModelConfig::PreactResnet18(_) => "preact-resnet18",
        }
    }

    pub fn arch_name(&self) -> &'static str {
        match self {
            ModelConfig::Cnn(_) => "cnn",
            ModelConfig::PreactResnet18(_) => "preact-resnet18",
        }
    }
}

/// `(name, shape, row-major values)` per tensor, in the PyTorch twin's names and layouts.
pub type NamedWeights = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Any Rampart image classifier.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one model per process; boxing would only add a hop
pub enum Model {
    Cnn(Cnn),
    PreactResnet18(PreActResNet),
}

impl Model {
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Model::Cnn(m) => m.features(x),
            Model::PreactResnet18(m) => m.features(x),
        }
    }

    pub fn head(&self, features: Tensor<2>) -> Tensor<2> {
        match self {
            Model::Cnn(m) => m.head(features),
            Model::PreactResnet18(m) => m.head(features),
        }
    }

    /// Logits for images in `[0, 1]` (test-time behaviour: an RA model gates its features
    /// with its predicted class).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        if self.has_reverse_attention() {
            return self.forward_ra(x, &RaMask::Predicted).logits;
        }
        self.head(self.features(x))
    }

    /// Logits and auxiliary logits under an RA mask.
    pub fn forward_ra(&self, x: Tensor<4>, mask: &RaMask) -> RaOutput {
        match self {
            Model::Cnn(m) => m.forward_ra(x, mask),
            Model::PreactResnet18(m) => m.forward_ra(x, mask),
        }
    }

    pub fn has_reverse_attention(&self) -> bool {
        match self {
            Model::Cnn(m) => m.reverse_attention,
            Model::PreactResnet18(m) => m.reverse_attention,
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            Model::Cnn(m) => m.fc2.weight.dims()[1],
            Model::PreactResnet18(m) => m.linear.weight.dims()[1],
        }
    }

    /// Weights in the PyTorch twin's names and layouts (`bench/twins.py`).
    pub fn named_weights(&self) -> NamedWeights {
        match self {
            Model::Cnn(m) => m.named_weights(),
            Model::PreactResnet18(m) => m.named_weights(),
        }
    }

    /// Parameters are initialised lazily and clones share that pending state, so a
    /// `clone().freeze()` of a never-run model would freeze the original too. Touching
    /// every parameter once makes them concrete.
    fn materialize_params(self) -> Self {
        struct Touch;
        impl ModuleVisitor for Touch {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        self.visit(&mut Touch);
        self
    }

    /// A copy for attacking: no parameter gradients, no training behaviour.
    pub fn frozen(&self) -> Self {
        self.clone().freeze()
    }
}
