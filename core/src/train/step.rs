//! One optimisation step: the method's inputs for the batch, the imbalance counter-measure's
//! augmentation and loss, ANCRA's auxiliary heads and negative contrast, then the update.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::inner::{adversarial_inputs, make_negatives, trades_adversarial};
use super::{Ancra, Balance, Method, TrainConfig};
use crate::attack::semantic::{Attribute, AttributeSpace, Sia, SiaConfig, elastic_field};
use crate::data::ImageDataset;
use crate::error::Result;
use crate::loss::{
    FocalLoss, anc_loss, cross_entropy, inverse_frequency_weights, mart_loss, trades_loss,
    weighted_cross_entropy,
};
use crate::model::{Model, RaMask, RaOutput};

/// The optimiser a recipe asks for.
pub fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    config.optimizer()
}

/// One optimisation step: builds the method's inputs for the batch (at budget `eps`), takes
/// the cross-entropy gradient and updates the model. Returns the model, the batch's mean loss
/// and its number of correct predictions. `model` and `x` must be on an autodiff device.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    method: &Method,
    model: Model,
    optim: &mut ModuleOptimizer,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    eps: f32,
    lr: f64,
    seed: u64,
) -> Result<(Model, f64, usize)> {
    StepPlan::default().step(method, model, optim, (x, y), &[], eps, lr, seed)
}

/// A batch's loss before the update: the tensor to differentiate, its value, and the number
/// of correct predictions.
struct BatchLoss {
    loss: Tensor<1>,
    value: f64,
    correct: usize,
}

/// The loss a step minimises.
#[derive(Default)]
enum StepLoss {
    #[default]
    CrossEntropy,
    Weighted(Vec<f32>),
    Focal(FocalLoss),
}

/// How rows picked for augmentation are transformed.
enum Augment {
    Jitter { space: AttributeSpace, scale: f32 },
    Sia(Sia),
}

/// What a step does besides the method's inputs: its loss, and which rows it augments and
/// how (see [`Balance`]). Built once per run from the recipe and the class counts.
#[derive(Default)]
pub(super) struct StepPlan {
    loss: StepLoss,
    augment: Option<Augment>,
    /// Per class, the probability that a draw is transformed: `1 − n_c / n_max`.
    augment_probability: Vec<f64>,
    ancra: Option<Ancra>,
}

impl StepPlan {
    pub(super) fn new(config: &TrainConfig, train_set: &ImageDataset) -> Result<Self> {
        let counts = train_set.class_counts();
        let n_max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
        let attributes = || Attribute::all_for(train_set.channels);
        let augment = match &config.balance {
            Balance::Jitter { scale } => Some(Augment::Jitter {
                space: AttributeSpace::new(attributes(), train_set.channels)?,
                scale: *scale,
            }),
            Balance::Sia {
                steps,
                attribute_step,
                scale,
            } => Some(Augment::Sia(Sia::new(SiaConfig {
                attributes: attributes(),
                steps: *steps,
                attribute_step: *attribute_step,
                pixel_step: 0.0,
                early_stop: true,
                range_scale: *scale,
                ..SiaConfig::new(train_set.channels)
            })?)),
            _ => None,
        };
        Ok(Self {
            loss: match &config.balance {
                Balance::Weighted => StepLoss::Weighted(inverse_frequency_weights(&counts)),
                Balance::Focal { gamma } => StepLoss::Focal(FocalLoss::new(*gamma, None)?),
                _ => StepLoss::CrossEntropy,
            },
            augment_probability: counts.iter().map(|&c| 1.0 - c as f64 / n_max).collect(),
            augment,
            ancra: config.ancra.clone(),
        })
    }

    /// Batch positions to augment, drawn on the host from the step's seed.
    pub(super) fn rows_to_augment(
        &self,
        indices: &[usize],
        labels: &[usize],
        seed: u64,
    ) -> Vec<usize> {
        if self.augment.is_none() {
            return Vec::new();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA06_5EED);
        indices
            .iter()
            .enumerate()
            .filter(|(_, i)| rng.random::<f64>() < self.augment_probability[labels[**i]])
            .map(|(row, _)| row)
            .collect()
    }

    /// Replaces the rows in `rows` by their augmented versions. The batch comes back
    /// reordered (kept rows first), which a training step does not mind.
    fn augment_batch(
        &self,
        model: &Model,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        rows: &[usize],
        seed: u64,
    ) -> Result<(Tensor<4>, Tensor<1, Int>)> {
        let Some(augment) = &self.augment else {
            return Ok((x, y));
        };
        if rows.is_empty() {
            return Ok((x, y));
        }
        let [n, _, h, w] = x.dims();
        let device = x.device();
        let index = |r: Vec<usize>| {
            let len = r.len();
            let r: Vec<i64> = r.into_iter().map(|v| v as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(r, [len]), &device)
        };
        let keep: Vec<usize> = (0..n).filter(|i| !rows.contains(i)).collect();
        let m = rows.len();
        let picked = index(rows.to_vec());
        let (xa, ya) = (
            x.clone().select(0, picked.clone()).detach(),
            y.clone().select(0, picked),
        );
        let moved = match augment {
            Augment::Jitter { space, scale } => {
                let coef = space.random_coefficients(m, *scale, seed, &device);
                let field = space
                    .column(Attribute::Elastic)
                    .map(|_| elastic_field(m, h, w, seed, &device));
                space
                    .apply(xa.without_autodiff(), coef, field.as_ref())
                    .clamp(0.0, 1.0)
            }
            Augment::Sia(sia) => {
                sia.run_detailed(model, xa, ya.clone(), &vec![0.0; m], seed)?
                    .adversarial
            }
        };
        let moved = if x.is_autodiff() {
            moved.detach().autodiff()
        } else {
            moved.detach()
        };
        if keep.is_empty() {
            return Ok((moved, ya));
        }
        let kept = index(keep);
        Ok((
            Tensor::cat(vec![x.select(0, kept.clone()), moved], 0),
            Tensor::cat(vec![y.select(0, kept), ya], 0),
        ))
    }

    /// One optimisation step (see [`train_step`]); `rows` are the batch positions to augment.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step(
        &self,
        method: &Method,
        model: Model,
        optim: &mut ModuleOptimizer,
        batch: (Tensor<4>, Tensor<1, Int>),
        rows: &[usize],
        eps: f32,
        lr: f64,
        seed: u64,
    ) -> Result<(Model, f64, usize)> {
        let b = self.batch_loss(method, &model, batch, rows, eps, seed)?;
        let grads = GradientsParams::from_grads(b.loss.backward(), &model);
        Ok((optim.step(lr, model, grads), b.value, b.correct))
    }

    /// One data-parallel step over `devices` (the first is the model's): the batch is cut into
    /// one contiguous shard per device, each device takes its shard's gradient on its own copy
    /// of the model (`fork`), with the loss weighted by the shard's share of the batch, the
    /// gradients are summed on the first device (Burn's `GradientsAccumulator`) and one
    /// optimiser step follows. For a loss that is a mean over samples this is the gradient of
    /// the whole batch; BatchNorm sees per-shard statistics, as in PyTorch's DDP without
    /// SyncBatchNorm, and each shard draws its own random starts.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step_on(
        &self,
        devices: &[Device],
        method: &Method,
        model: Model,
        optim: &mut ModuleOptimizer,
        (x, y): (Tensor<4>, Tensor<1, Int>),
        rows: &[usize],
        eps: f32,
        lr: f64,
        seed: u64,
    ) -> Result<(Model, f64, usize)> {
        let n = x.dims()[0];
        if devices.len() <= 1 || n < 2 {
            return self.step(method, model, optim, (x, y), rows, eps, lr, seed);
        }
        let main = x.device();
        let k = devices.len().min(n);
        let bounds: Vec<(usize, usize)> = (0..k).map(|i| (i * n / k, (i + 1) * n / k)).collect();
        let shard = |i: usize| -> Result<(GradientsParams, f64, usize)> {
            let (start, end) = bounds[i];
            let device = devices[i].clone().autodiff();
            let copy = model.clone().fork(&device);
            let xs = x
                .clone()
                .narrow(0, start, end - start)
                .detach()
                .to_device(&device);
            let ys = y.clone().narrow(0, start, end - start).to_device(&device);
            let local: Vec<usize> = rows
                .iter()
                .filter(|&&r| (start..end).contains(&r))
                .map(|r| r - start)
                .collect();
            let b = self.batch_loss(method, &copy, (xs, ys), &local, eps, seed ^ i as u64)?;
            let share = (end - start) as f32 / n as f32;
            let grads = GradientsParams::from_grads((b.loss * share).backward(), &copy);
            Ok((
                grads.to_device(&main, &copy),
                b.value * share as f64,
                b.correct,
            ))
        };
        let shards: Vec<Result<(GradientsParams, f64, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..k).map(|i| scope.spawn(move || shard(i))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a data-parallel shard panicked"))
                .collect()
        });
        let mut sum = GradientsAccumulator::<Model>::new();
        let (mut value, mut correct) = (0.0, 0);
        // In shard order, so the sum does not depend on which device finished first.
        for r in shards {
            let (grads, v, c) = r?;
            sum.accumulate(&model, grads);
            value += v;
            correct += c;
        }
        Ok((optim.step(lr, model, sum.grads()), value, correct))
    }

    /// The method's loss on one batch (after augmentation), its value and the number of
    /// correct predictions, before any update.
    fn batch_loss(
        &self,
        method: &Method,
        model: &Model,
        (x, y): (Tensor<4>, Tensor<1, Int>),
        rows: &[usize],
        eps: f32,
        seed: u64,
    ) -> Result<BatchLoss> {
        let (x, y) = self.augment_batch(model, x, y, rows, seed)?;
        // In training an RA model gates with the true labels (plain models ignore the mask).
        let mask = RaMask::Labels(y.clone());
        let forward = |input: Tensor<4>| model.forward_ra(input, &mask);
        let aux_weight = self.ancra.as_ref().map_or(0.0, |a| a.aux_weight);
        // `main + aux_weight · mean over the auxiliary heads`.
        let with_aux = |main: Tensor<1>, aux: Vec<Tensor<1>>| {
            let k = aux.len();
            match aux.into_iter().reduce(|a, b| a + b) {
                Some(sum) => main + sum * (aux_weight / k as f32),
                None => main,
            }
        };
        // The logits whose accuracy the step reports. An RA model's final logits are gated by
        // the true class in training and would read ~100 %: report its (last) auxiliary head,
        // the class its test-time mask picks, instead.
        let reported = |o: &RaOutput| o.aux.last().cloned().unwrap_or_else(|| o.logits.clone());
        // TRADES and MART: a loss on natural/adversarial logit pairs, the same loss on every
        // auxiliary head's pair.
        type PairLoss = fn(Tensor<2>, Tensor<2>, Tensor<1, Int>, f32) -> Tensor<1>;
        let paired = |adv: Tensor<4>, pair_loss: PairLoss, beta: f32| {
            let adv = forward(adv);
            let nat = forward(x.clone());
            let aux = nat
                .aux
                .iter()
                .zip(&adv.aux)
                .map(|(n, a)| pair_loss(n.clone(), a.clone(), y.clone(), beta))
                .collect();
            let main = pair_loss(nat.logits.clone(), adv.logits.clone(), y.clone(), beta);
            (reported(&adv), with_aux(main, aux), Some(nat))
        };
        let (logits, loss, natural) = match method {
            Method::Trades {
                steps,
                step_size,
                beta,
                ..
            } if eps > 0.0 => paired(
                trades_adversarial(model, x.clone(), eps, *steps, *step_size, seed),
                trades_loss,
                *beta,
            ),
            Method::Mart {
                steps,
                step_size,
                beta,
                ..
            } if eps > 0.0 => {
                let pgd = Method::PgdAt {
                    eps,
                    steps: *steps,
                    step_size: *step_size,
                };
                let adv = adversarial_inputs(&pgd, model, x.clone(), y.clone(), eps, seed)?;
                paired(adv, mart_loss, *beta)
            }
            _ => {
                let inputs = adversarial_inputs(method, model, x.clone(), y.clone(), eps, seed)?;
                let out = forward(inputs);
                let main = match &self.loss {
                    StepLoss::CrossEntropy => cross_entropy(out.logits.clone(), y.clone()),
                    StepLoss::Weighted(w) => {
                        weighted_cross_entropy(out.logits.clone(), y.clone(), w)
                    }
                    StepLoss::Focal(f) => f.forward(out.logits.clone(), y.clone()),
                };
                let aux = out
                    .aux
                    .iter()
                    .map(|a| cross_entropy(a.clone(), y.clone()))
                    .collect();
                (reported(&out), with_aux(main, aux), None)
            }
        };
        let loss = match &self.ancra {
            Some(a) if a.anc => {
                let nat = natural.unwrap_or_else(|| forward(x.clone()));
                let (negatives, negative_labels, valid) =
                    make_negatives(model, &x, &y, eps, a.negative_steps, seed)?;
                let neg = model.forward_ra(negatives, &RaMask::Labels(negative_labels));
                let aux = nat
                    .aux
                    .iter()
                    .zip(&neg.aux)
                    .map(|(n, q)| anc_loss(n.clone(), q.clone(), valid.clone()))
                    .collect();
                let contrast = with_aux(anc_loss(nat.logits, neg.logits, valid.clone()), aux);
                loss + contrast * a.zeta
            }
            _ => loss,
        };
        let value = loss.clone().into_scalar::<f32>() as f64;
        let correct = logits
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(y)
            .int()
            .sum()
            .into_scalar::<i64>() as usize;
        Ok(BatchLoss {
            loss,
            value,
            correct,
        })
    }
}
