//! The ABEX-RAT classifier: an MLP on frozen sentence embeddings, trained with focal loss and
//! random adversarial training (RAT). For each mini-batch one perturbation of the embeddings
//! is drawn at random — none, Gaussian noise, FGM (ε·g/‖g‖₂) or a few L2 PGD steps — and,
//! unless it is "none", the loss on the perturbed embeddings is added with weight `weight`.
//! Gradients for FGM and PGD are taken on a frozen copy (dropout off).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, decay::WeightDecayConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

mod ensemble;

use super::checkpoint::{self, TextCheckpointOptions};
pub use super::rat::{Perturbation, RatConfig, perturb};
use crate::error::{Error, Result};
use crate::loss::FocalLoss;
pub use ensemble::member_checkpoint;

/// Layer widths of the MLP head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub input: usize,
    pub hidden: Vec<usize>,
    pub num_classes: usize,
    pub dropout: f64,
}

impl MlpConfig {
    pub fn validate(&self) -> Result<()> {
        if self.input == 0 || self.num_classes < 2 || self.hidden.contains(&0) {
            return Err(Error::invalid(
                "mlp config",
                "needs input ≥ 1, hidden widths ≥ 1 and at least two classes",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid("mlp config", "dropout must be in [0, 1)"));
        }
        let widest = [self.input, self.num_classes]
            .into_iter()
            .chain(self.hidden.iter().copied())
            .max()
            .unwrap_or(0);
        if widest > crate::model::MAX_WIDTH || self.hidden.len() > 16 {
            return Err(Error::invalid(
                "mlp config",
                format!(
                    "at most 16 hidden layers of width ≤ {}",
                    crate::model::MAX_WIDTH
                ),
            ));
        }
        crate::model::check_weight_count(self.weight_count())
    }

    /// Weights of the linear layers (biases not counted), or `None` on overflow.
    pub fn weight_count(&self) -> Option<u64> {
        let widths: Vec<u64> = std::iter::once(self.input)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.num_classes))
            .map(|w| w as u64)
            .collect();
        widths
            .windows(2)
            .try_fold(0u64, |t, p| t.checked_add(p[0].checked_mul(p[1])?))
    }

    pub fn init(&self, device: &Device) -> Result<Mlp> {
        self.validate()?;
        let mut layers = Vec::new();
        let mut width = self.input;
        for &h in &self.hidden {
            layers.push(LinearConfig::new(width, h).init(device));
            width = h;
        }
        Ok(Mlp {
            layers,
            out: LinearConfig::new(width, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        })
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    out: Linear,
    dropout: Dropout,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut x = x;
        for layer in &self.layers {
            x = self.dropout.forward(relu(layer.forward(x)));
        }
        self.out.forward(x)
    }

    pub fn num_classes(&self) -> usize {
        self.out.weight.dims()[1]
    }

    /// The widths of the hidden layers.
    pub fn hidden(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.weight.dims()[1]).collect()
    }

    /// The same classifier with `delta` added to its logits (its output bias), e.g. a
    /// [`logit_adjustment`].
    pub fn shift_logits(mut self, delta: &[f32]) -> Result<Self> {
        if delta.len() != self.num_classes() {
            return Err(Error::invalid(
                "logit shift",
                format!("{} values for {} classes", delta.len(), self.num_classes()),
            ));
        }
        let device = self.out.weight.device();
        let shift = Tensor::<1>::from_data(TensorData::new(delta.to_vec(), [delta.len()]), &device);
        let bias = match self.out.bias.take() {
            Some(b) => b.val() + shift,
            None => shift,
        };
        // A new leaf: the sum is a non-leaf on an autodiff device and cannot be a parameter.
        self.out.bias = Some(burn::module::Param::from_tensor(bias.detach()));
        Ok(self)
    }
}

/// Post-hoc logit adjustment for class imbalance (Menon et al., 2021): `−τ·ln π_c`, with π the
/// training-class frequencies; τ = 0 changes nothing, τ = 1 turns the arg max of the
/// posterior into that of the balanced (class-conditional) likelihood.
pub fn logit_adjustment(counts: &[usize], tau: f32) -> Vec<f32> {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&c| -tau * ((c.max(1) as f32) / n.max(1) as f32).ln())
        .collect()
}

/// The loss a text classifier trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum TextLoss {
    CrossEntropy,
    /// Focal loss with γ; α per class either given or, when `alpha` is `None` and
    /// `balanced_alpha` is set, the normalised inverse class frequency of the training set.
    Focal {
        gamma: f32,
        alpha: Option<Vec<f32>>,
        balanced_alpha: bool,
    },
}

/// A complete text-classifier recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextTrainConfig {
    pub hidden: Vec<usize>,
    pub dropout: f64,
    pub loss: TextLoss,
    pub rat: Option<RatConfig>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Members of a seed ensemble (1: a single model). Each trains from its own seed; the
    /// result is [`Mlp::ensemble`] of them, one MLP whose logits are their mean.
    #[serde(default = "one")]
    pub seeds: usize,
    /// After the head trains on frozen embeddings, fine-tune the encoder's top layers with it
    /// ([`crate::text::finetune`]); `None`: the encoder stays frozen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune: Option<crate::text::finetune::FineTuneConfig>,
}

fn one() -> usize {
    1
}

/// Largest `seeds`: the widened layers stay far below the width limit at 64.
pub const MAX_SEEDS: usize = 64;

impl TextTrainConfig {
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_SEEDS).contains(&self.seeds) {
            return Err(Error::invalid(
                "text training config",
                format!("seeds must be in 1..={MAX_SEEDS}, got {}", self.seeds),
            ));
        }
        if self.epochs == 0 || self.batch_size == 0 || !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::invalid(
                "text training config",
                "epochs, batch size and learning rate must be positive",
            ));
        }
        if let Some(r) = &self.rat {
            r.validate()?;
        }
        if let Some(t) = &self.fine_tune {
            t.validate()?;
            if self.seeds > 1 {
                return Err(Error::invalid(
                    "text training config",
                    "fine-tuning trains one encoder: it takes seeds = 1",
                ));
            }
        }
        Ok(())
    }
}

/// The loss a recipe trains with, its balanced α taken from `class_counts`.
pub fn loss_fn(config: &TextTrainConfig, class_counts: &[usize]) -> Result<FocalLoss> {
    Ok(match &config.loss {
        TextLoss::CrossEntropy => FocalLoss::new(0.0, None)?,
        TextLoss::Focal {
            gamma,
            alpha,
            balanced_alpha,
        } => {
            let alpha = match (alpha, balanced_alpha) {
                (Some(a), _) => Some(a.clone()),
                (None, true) => Some(balanced(class_counts)),
                (None, false) => None,
            };
            FocalLoss::new(*gamma, alpha)?
        }
    })
}

/// Inverse class frequency, scaled so that the weights average 1 over the training samples
/// (the image trainer's [`crate::loss::inverse_frequency_weights`]).
pub fn balanced(counts: &[usize]) -> Vec<f32> {
    crate::loss::inverse_frequency_weights(counts)
}

/// Metrics of one text-training epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextEpoch {
    /// The seed-ensemble member this epoch trained (0 for a single model).
    #[serde(default)]
    pub member: usize,
    /// The epoch within its member's training.
    pub epoch: usize,
    pub train_loss: f64,
    /// How many mini-batches drew each perturbation: none, gaussian, fgm, pgd.
    pub perturbations: [usize; 4],
    pub seconds: f64,
}

fn matrix(rows: &[Vec<f32>], device: &Device) -> Result<Tensor<2>> {
    let d = rows.first().map_or(0, Vec::len);
    if rows.iter().any(|r| r.len() != d) || d == 0 {
        return Err(Error::invalid(
            "embeddings",
            "rows must be non-empty and of one length",
        ));
    }
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_data(
        TensorData::new(flat, [rows.len(), d]),
        device,
    ))
}

/// Trains an MLP on `x` (one embedding per row) with labels `y` in `0..num_classes`.
pub fn train_mlp(
    x: &[Vec<f32>],
    y: &[usize],
    num_classes: usize,
    config: &TextTrainConfig,
    device: &Device,
    on_epoch: &mut dyn FnMut(&TextEpoch),
) -> Result<Mlp> {
    Ok(train_mlp_resumable(x, y, num_classes, config, device, None, on_epoch)?.model)
}

/// What [`train_mlp_resumable`] ends with.
#[derive(Debug)]
pub struct TextTrained {
    pub model: Mlp,
    /// Every epoch's metrics, those of a resumed run's earlier processes included.
    pub history: Vec<TextEpoch>,
    /// The epoch this process started at (0 unless resumed).
    pub resumed_at: usize,
    /// False when the run stopped early through `stop_after_epochs`.
    pub completed: bool,
}

/// Seed of epoch `epoch`'s random draws (batch order, perturbation kinds, dropout, noise).
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9)
}

/// [`train_mlp`] with a checkpoint after every epoch; with `checkpoint.resume` it continues
/// from the checkpoint, which must have been written for the same recipe and data. A seed
/// ensemble trains its members one after the other, each with its own checkpoint
/// ([`member_checkpoint`]); `history` then runs through the members in turn.
pub fn train_mlp_resumable(
    x: &[Vec<f32>],
    y: &[usize],
    num_classes: usize,
    config: &TextTrainConfig,
    device: &Device,
    checkpoint: Option<&TextCheckpointOptions>,
    on_epoch: &mut dyn FnMut(&TextEpoch),
) -> Result<TextTrained> {
    config.validate()?;
    if config.seeds == 1 {
        return train_member(x, y, num_classes, config, device, checkpoint, on_epoch);
    }
    ensemble::train(x, y, num_classes, config, device, checkpoint, on_epoch)
}

fn train_member(
    x: &[Vec<f32>],
    y: &[usize],
    num_classes: usize,
    config: &TextTrainConfig,
    device: &Device,
    checkpoint: Option<&TextCheckpointOptions>,
    on_epoch: &mut dyn FnMut(&TextEpoch),
) -> Result<TextTrained> {
    config.validate()?;
    if x.len() != y.len() || x.is_empty() {
        return Err(Error::invalid(
            "text training data",
            format!("{} embeddings but {} labels", x.len(), y.len()),
        ));
    }
    if let Some(bad) = y.iter().find(|&&c| c >= num_classes) {
        return Err(Error::invalid(
            "text training data",
            format!("label {bad} out of range (0..{num_classes})"),
        ));
    }
    let device = device.clone().autodiff();
    let mut counts = vec![0usize; num_classes];
    for &c in y {
        counts[c] += 1;
    }
    let loss = loss_fn(config, &counts)?;
    let mlp_config = MlpConfig {
        input: x[0].len(),
        hidden: config.hidden.clone(),
        num_classes,
        dropout: config.dropout,
    };
    device.seed(config.seed);
    let mut model = mlp_config.init(&device)?;
    let decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    let fresh_optim =
        || -> ModuleOptimizer { AdamConfig::new().with_weight_decay(decay.clone()).init() };
    let mut optim = fresh_optim();
    let all_x = matrix(x, &device)?;
    let all_y = Tensor::<1, Int>::from_data(
        TensorData::new(y.iter().map(|&c| c as i64).collect::<Vec<_>>(), [y.len()]),
        &device,
    );
    let data = match checkpoint {
        Some(_) => checkpoint::fingerprint(x, y),
        None => String::new(),
    };
    let mut history = Vec::new();
    let mut first = 0;
    if let Some(ck) = checkpoint.filter(|c| c.resume && c.path.exists()) {
        let (header, m, o) = checkpoint::load(&ck.path, config, &data, &device, fresh_optim())?;
        (model, optim, first, history) = (m, o, header.epoch, header.history);
    }
    for epoch in first..config.epochs {
        if checkpoint
            .and_then(|c| c.stop_after_epochs)
            .is_some_and(|n| epoch - first >= n)
        {
            return Ok(TextTrained {
                model,
                history,
                resumed_at: first,
                completed: false,
            });
        }
        let clock = std::time::Instant::now();
        let seed = epoch_seed(config.seed, epoch);
        // Every random source restarts from (seed, epoch): a resumed run draws what an
        // uninterrupted one draws. (The draws' seed is kept apart from the one that
        // initialised the weights.)
        let draws = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xD1B5_4A32_D192_ED03;
        device.seed(draws);
        let mut rng = ChaCha8Rng::seed_from_u64(draws);
        let order = crate::data::shuffled(y.len(), seed);
        let mut loss_sum = 0.0;
        let mut kinds = [0usize; 4];
        for chunk in order.chunks(config.batch_size) {
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(
                    chunk.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                    [chunk.len()],
                ),
                &device,
            );
            let xb = all_x.clone().select(0, idx.clone());
            let yb = all_y.clone().select(0, idx);
            let kind = config
                .rat
                .as_ref()
                .map_or(Perturbation::None, |r| r.draw(&mut rng));
            kinds[kind as usize] += 1;
            let mut total = loss.forward(model.forward(xb.clone()), yb.clone());
            if let Some(rat) = &config.rat
                && let Some(xp) = perturb(kind, &model, &xb, &yb, rat, &loss)
            {
                total = total + loss.forward(model.forward(xp), yb.clone()) * rat.weight;
            }
            loss_sum += total.clone().into_scalar::<f32>() as f64 * chunk.len() as f64;
            let grads = GradientsParams::from_grads(total.backward(), &model);
            model = optim.step(config.lr, model, grads);
        }
        let metrics = TextEpoch {
            member: 0,
            epoch,
            train_loss: loss_sum / y.len() as f64,
            perturbations: kinds,
            seconds: clock.elapsed().as_secs_f64(),
        };
        history.push(metrics.clone());
        if let Some(ck) = checkpoint {
            let header = checkpoint::TextCheckpointHeader {
                data: data.clone(),
                config: config.clone(),
                mlp: mlp_config.clone(),
                epoch: epoch + 1,
                history: history.clone(),
            };
            checkpoint::save(&ck.path, &header, &model, &optim)?;
        }
        on_epoch(&metrics);
    }
    Ok(TextTrained {
        model,
        history,
        resumed_at: first,
        completed: true,
    })
}

/// Class probabilities for each embedding (inference: dropout off). Async reads, so the
/// browser can call it.
pub async fn predict_proba(model: &Mlp, x: &[Vec<f32>], device: &Device) -> Result<Vec<Vec<f32>>> {
    let m = model.valid();
    let device = device.clone().without_autodiff();
    let k = m.out.weight.dims()[1];
    let mut out = Vec::with_capacity(x.len());
    for chunk in x.chunks(1024) {
        let probs = burn::tensor::activation::softmax(m.forward(matrix(chunk, &device)?), 1);
        let v = crate::tensor_io::read_floats(probs).await?;
        out.extend(v.chunks(k).map(<[f32]>::to_vec));
    }
    Ok(out)
}

/// Accuracy, F1 and per-class metrics of `model` on embeddings `x` with true classes `labels`.
pub async fn evaluate(
    model: &Mlp,
    x: &[Vec<f32>],
    labels: &[usize],
    class_names: &[String],
    device: &Device,
) -> Result<super::metrics::ClassificationReport> {
    let probs = predict_proba(model, x, device).await?;
    let predicted: Vec<usize> = probs.iter().map(|p| crate::argmax(p)).collect();
    super::metrics::classification_report(labels, &predicted, class_names)
}
