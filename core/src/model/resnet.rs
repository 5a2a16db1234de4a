//! PreAct ResNet-18 (He et al. 2016, "Identity mappings in deep residual networks") in the
//! CIFAR layout used by the adversarial-training literature: conv3×3-w, four stages of two
//! pre-activation basic blocks (w, 2w, 4w, 8w channels; stride 1, 2, 2, 2), BN-ReLU, global
//! average pooling, linear. With reverse attention (ANCRA) both blocks of the last stage are
//! RA blocks, chained: z = ReLU(BN(block(x))), auxiliary logits from GAP(z) through the final
//! linear layer, then z ⊙ W[c] channel-wise feeds the next block.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{
    NamedWeights, Normalization, RaMask, RaOutput, gate_rows, push_conv, push_linear, push_tensor,
};
use crate::error::{Error, Result};
use crate::kernels::conv2d;
use crate::model::{check_sizes, check_weight_count};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
    /// Channels of the first stage (64 in the standard network).
    pub base_width: usize,
    pub normalization: Normalization,
    #[serde(default)]
    pub reverse_attention: bool,
}

impl ResNetConfig {
    /// The standard network for `classes` classes on 3×32×32 images with CIFAR-10's
    /// per-channel statistics.
    pub fn cifar(classes: usize) -> Self {
        Self {
            in_channels: 3,
            height: 32,
            width: 32,
            num_classes: classes,
            base_width: 64,
            normalization: Normalization {
                mean: vec![0.4914, 0.4822, 0.4465],
                std: vec![0.2471, 0.2435, 0.2616],
            },
            reverse_attention: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |r: &str| Err(Error::invalid("model config", r));
        check_sizes(
            self.in_channels,
            self.height,
            self.width,
            self.num_classes,
            &[self.base_width.saturating_mul(8)],
        )?;
        if self.in_channels == 0 || self.num_classes < 2 || self.base_width == 0 {
            return bad("needs input channels, two classes and a positive width");
        }
        if self.height < 8 || self.width < 8 {
            return bad("PreAct ResNet-18 halves the image three times: at least 8×8");
        }
        let n = &self.normalization;
        if n.mean.len() != self.in_channels || n.std.len() != self.in_channels {
            return bad("normalisation needs one mean and one std per input channel");
        }
        if n.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad("normalisation std must be positive and finite");
        }
        check_weight_count(self.weight_count())
    }

    /// Weights of the convolutions and the linear layer (BatchNorm not counted), or `None`
    /// when the count overflows.
    pub(crate) fn weight_count(&self) -> Option<u64> {
        let w = self.base_width as u64;
        let mut total = 9u64.checked_mul(self.in_channels as u64)?.checked_mul(w)?;
        let mut channels = w;
        for (stage, out) in [w, 2 * w, 4 * w, 8 * w].into_iter().enumerate() {
            for (i, o, stride) in [
                (channels, out, if stage == 0 { 1 } else { 2 }),
                (out, out, 1),
            ] {
                let shortcut = if stride != 1 || i != o { i * o } else { 0 };
                total = total.checked_add(9 * i * o + 9 * o * o + shortcut)?;
            }
            channels = out;
        }
        total.checked_add(8 * w * self.num_classes as u64)
    }

    pub fn init(&self, device: &Device) -> Result<PreActResNet> {
        self.validate()?;
        let w = self.base_width;
        let conv3 = |i, o, stride| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device)
        };
        let block = |i: usize, o: usize, stride: usize| Block {
            bn1: BatchNormConfig::new(i).init(device),
            conv1: conv3(i, o, stride),
            bn2: BatchNormConfig::new(o).init(device),
            conv2: conv3(o, o, 1),
            shortcut: (stride != 1 || i != o).then(|| {
                Conv2dConfig::new([i, o], [1, 1])
                    .with_stride([stride, stride])
                    .with_bias(false)
                    .init(device)
            }),
        };
        let mut blocks = Vec::new();
        let mut channels = w;
        for (stage, out) in [w, 2 * w, 4 * w, 8 * w].into_iter().enumerate() {
            let stride = if stage == 0 { 1 } else { 2 };
            blocks.push(block(channels, out, stride));
            blocks.push(block(out, out, 1));
            channels = out;
        }
        let ra_norms = if self.reverse_attention {
            vec![
                BatchNormConfig::new(8 * w).init(device),
                BatchNormConfig::new(8 * w).init(device),
            ]
        } else {
            vec![BatchNormConfig::new(8 * w).init(device)]
        };
        Ok(PreActResNet {
            stem: conv3(self.in_channels, w, 1),
            blocks,
            final_norms: ra_norms,
            linear: LinearConfig::new(8 * w, self.num_classes).init(device),
            normalization: self.normalization.clone(),
            reverse_attention: self.reverse_attention,
        })
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub bn1: BatchNorm,
    pub conv1: Conv2d,
    pub bn2: BatchNorm,
    pub conv2: Conv2d,
    pub shortcut: Option<Conv2d>,
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(x.clone()));
        let shortcut = match &self.shortcut {
            Some(conv) => conv2d(conv, out.clone()),
            None => x,
        };
        let out = conv2d(&self.conv1, out);
        conv2d(&self.conv2, relu(self.bn2.forward(out))) + shortcut
    }
}

#[derive(Module, Debug)]
pub struct PreActResNet {
    pub stem: Conv2d,
    pub blocks: Vec<Block>,
    /// BN before the pooling: one without RA, one per RA block with it.
    pub final_norms: Vec<BatchNorm>,
    pub linear: Linear,
    #[module(skip)]
    pub normalization: Normalization,
    #[module(skip)]
    pub reverse_attention: bool,
}

fn pool(z: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = z.dims();
    z.mean_dim(3).mean_dim(2).reshape([n, c])
}

impl PreActResNet {
    fn trunk(&self, x: Tensor<4>, blocks: usize) -> Tensor<4> {
        let mut x = conv2d(&self.stem, self.normalization.apply(x));
        for b in &self.blocks[..blocks] {
            x = b.forward(x);
        }
        x
    }

    /// Pooled penultimate features (the plain network's).
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        if self.reverse_attention {
            // Features under the predicted masks: what the final layer sees at test time.
            return self.forward_ra_features(x, &RaMask::Predicted).0;
        }
        let z = self.trunk(x, self.blocks.len());
        pool(relu(self.final_norms[0].forward(z)))
    }

    pub fn head(&self, features: Tensor<2>) -> Tensor<2> {
        self.linear.forward(features)
    }

    fn forward_ra_features(&self, x: Tensor<4>, mask: &RaMask) -> (Tensor<2>, Vec<Tensor<2>>) {
        let n = self.blocks.len();
        let mut z = self.trunk(x, n - 2);
        let w = self.linear.weight.val().transpose();
        let mut aux = Vec::new();
        for (block, norm) in self.blocks[n - 2..].iter().zip(&self.final_norms) {
            let out = relu(norm.forward(block.forward(z)));
            let a = self.linear.forward(pool(out.clone()));
            let gate = gate_rows(&w, &a, mask);
            let [b, c] = gate.dims();
            z = out * gate.reshape([b, c, 1, 1]);
            aux.push(a);
        }
        (pool(z), aux)
    }

    /// Weights in the PyTorch twin's names and layouts (`bench/twins.py`): module paths as
    /// here, BatchNorm's γ/β as `weight`/`bias` beside its running statistics.
    pub fn named_weights(&self) -> NamedWeights {
        let mut out = Vec::new();
        let bn = |out: &mut NamedWeights, name: &str, n: &BatchNorm| {
            push_tensor(out, format!("{name}.weight"), n.gamma.val());
            push_tensor(out, format!("{name}.bias"), n.beta.val());
            push_tensor(out, format!("{name}.running_mean"), n.running_mean.value());
            push_tensor(out, format!("{name}.running_var"), n.running_var.value());
        };
        push_conv(&mut out, "stem", &self.stem);
        for (i, b) in self.blocks.iter().enumerate() {
            bn(&mut out, &format!("blocks.{i}.bn1"), &b.bn1);
            push_conv(&mut out, &format!("blocks.{i}.conv1"), &b.conv1);
            bn(&mut out, &format!("blocks.{i}.bn2"), &b.bn2);
            push_conv(&mut out, &format!("blocks.{i}.conv2"), &b.conv2);
            if let Some(s) = &b.shortcut {
                push_conv(&mut out, &format!("blocks.{i}.shortcut"), s);
            }
        }
        for (i, n) in self.final_norms.iter().enumerate() {
            bn(&mut out, &format!("final_norms.{i}"), n);
        }
        push_linear(&mut out, "linear", &self.linear);
        out
    }

    pub fn forward_ra(&self, x: Tensor<4>, mask: &RaMask) -> RaOutput {
        if !self.reverse_attention {
            return RaOutput {
                logits: self.head(self.features(x)),
                aux: Vec::new(),
            };
        }
        let (features, aux) = self.forward_ra_features(x, mask);
        RaOutput {
            logits: self.head(features),
            aux,
        }
    }
}
