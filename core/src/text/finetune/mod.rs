//! Fine-tuning the sentence encoder with the classifier: the top `layers` transformer layers of
//! MiniLM and the MLP head train together end to end, on focal loss with RAT perturbations of
//! the pooled embedding.
//!
//! The recipe is "linear probe, then fine-tune" (Kumar et al., 2022): the head first trains on
//! frozen embeddings ([`super::classifier::train_mlp_resumable`]), then encoder and head
//! continue together with small learning rates, so that the top layers are not pulled about by
//! a random head's gradients. Layers below the fine-tuned ones stay frozen: their token
//! vectors are computed once ([`SentenceEncoder::token_states`], by the host kernel on the
//! CPU) and every epoch starts from them, which makes an epoch cost only the trained layers'
//! forward and backward passes. `layers` = the encoder's depth trains all of it (the word,
//! position and type embeddings stay frozen).
//!
//! Learning rates: `lr` for the top layer, times `layer_decay` per layer further down
//! (layer-wise decay, Howard & Ruder 2018; Clark et al. 2020), `head_lr` for the head; all
//! follow one schedule, a linear warm-up over the first `warmup` fraction of the steps, then a
//! linear decay to zero. Encoder layers use AdamW (weight decay `weight_decay`), the head Adam
//! with the recipe's weight decay. With validation reports, the epoch of the best validation
//! macro-F1 is kept and training stops after `patience` epochs without a better one.

mod model;

pub use model::{Batch, TunedClassifier, perturb_tokens, predict, predict_proba};

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::checkpoint::TextCheckpointOptions;
use super::classifier::{Mlp, Perturbation, TextTrainConfig, loss_fn, perturb};
use super::encoder::{SentenceEncoder, TokenStates};
use crate::error::{Error, Result};
use crate::io::{seal, unseal};

/// How the encoder is fine-tuned (the head's loss and RAT are the recipe's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneConfig {
    /// Top transformer layers trained (1 ..= the encoder's depth).
    pub layers: usize,
    pub epochs: usize,
    /// Texts per mini-batch.
    pub batch_size: usize,
    /// Learning rate of the top layer.
    pub lr: f64,
    /// Factor on the learning rate per layer further down (1: the same for all).
    pub layer_decay: f64,
    /// Learning rate of the head.
    pub head_lr: f64,
    /// AdamW weight decay of the encoder layers.
    pub weight_decay: f64,
    /// Fraction of the steps with a linear warm-up.
    pub warmup: f64,
    /// Epochs without a better validation macro-F1 before stopping (0: never stop early).
    pub patience: usize,
    /// RAT perturbs the token vectors entering the fine-tuned layers (each token's by at most
    /// `token_eps` in L2) instead of the pooled embedding; FGM and PGD then take their
    /// gradients through the fine-tuned layers, which costs one more forward and backward pass
    /// per step of the attack.
    #[serde(default)]
    pub token_rat: bool,
    #[serde(default = "default_token_eps")]
    pub token_eps: f32,
}

fn default_token_eps() -> f32 {
    1.0
}

impl FineTuneConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::invalid("fine-tuning config", reason));
        if self.layers == 0 || self.epochs == 0 || self.batch_size == 0 {
            return bad("layers, epochs and batch size must be positive".into());
        }
        for (name, v) in [("lr", self.lr), ("head lr", self.head_lr)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} must be positive, got {v}"));
            }
        }
        if !(self.layer_decay.is_finite() && self.layer_decay > 0.0 && self.layer_decay <= 1.0) {
            return bad(format!(
                "layer decay must be in (0, 1], got {}",
                self.layer_decay
            ));
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad(format!("warmup must be in [0, 1), got {}", self.warmup));
        }
        if !(self.token_eps.is_finite() && self.token_eps > 0.0) {
            return bad(format!(
                "token eps must be positive, got {}",
                self.token_eps
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight decay must be ≥ 0, got {}",
                self.weight_decay
            ));
        }
        Ok(())
    }

    /// Learning-rate factor of step `step` of `total`: linear warm-up, then linear decay.
    pub fn schedule(&self, step: usize, total: usize) -> f64 {
        let warm = ((self.warmup * total as f64).round() as usize).max(1);
        if step < warm {
            (step + 1) as f64 / warm as f64
        } else {
            (total - step) as f64 / (total + 1 - warm) as f64
        }
    }
}

/// Metrics of one fine-tuning epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneEpoch {
    pub epoch: usize,
    pub train_loss: f64,
    /// Macro-F1 on the validation reports, when there are any.
    pub val_macro_f1: Option<f64>,
    /// Mini-batches that drew each perturbation: none, gaussian, fgm, pgd.
    pub perturbations: [usize; 4],
    /// The training pass's seconds (the validation pass not included).
    pub seconds: f64,
}

/// What [`fine_tune`] ends with.
pub struct FineTuned {
    /// The top layers (bottom first) and the head of the kept epoch.
    pub model: TunedClassifier,
    pub history: Vec<TuneEpoch>,
    /// The kept epoch: the best on validation, else the last.
    pub kept_epoch: usize,
    pub resumed_at: usize,
    /// False when the run stopped through `stop_after_epochs`.
    pub completed: bool,
}

/// Labelled texts with their frozen token vectors.
pub struct TuneData<'a> {
    pub states: &'a [&'a TokenStates],
    pub labels: &'a [usize],
}

const MAGIC: &[u8; 8] = b"RMPTTUNE";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TuneCheckpointHeader {
    data: String,
    config: TextTrainConfig,
    epoch: usize,
    history: Vec<TuneEpoch>,
    best: Option<(usize, f64)>,
}

fn fingerprint(encoder: &SentenceEncoder, train: &TuneData, val: Option<&TuneData>) -> String {
    let mut h = Sha256::new();
    h.update(encoder.fingerprint.as_bytes());
    for d in std::iter::once(train).chain(val) {
        h.update((d.labels.len() as u64).to_le_bytes());
        for (s, &y) in d.states.iter().zip(d.labels) {
            h.update((y as u64).to_le_bytes());
            for &l in &s.lengths {
                h.update((l as u64).to_le_bytes());
            }
            for v in &s.values {
                h.update(v.to_le_bytes());
            }
        }
    }
    format!("{:x}", h.finalize())
}

/// Weights as bytes, and back: the bundle's helpers, with checkpoint errors.
fn record_bytes<M: Module>(m: &M) -> Result<Vec<u8>> {
    crate::bundle::record_bytes(m).map_err(|e| Error::Checkpoint(e.to_string()))
}

fn load_bytes<M: Module>(m: M, bytes: &[u8]) -> Result<M> {
    crate::bundle::load_record(m, bytes).map_err(|e| Error::Checkpoint(e.to_string()))
}

/// Texts in batches of similar length (less padding): shuffled, sorted by tokens within pools
/// of 16 batches, then the batches shuffled.
fn batches(states: &[&TokenStates], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let order = crate::data::shuffled(states.len(), seed);
    let mut out = Vec::new();
    for pool in order.chunks(batch_size * 16) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&t| states[t].lengths.iter().max().copied().unwrap_or(0));
        out.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
    }
    out.shuffle(&mut rng);
    out
}

fn macro_f1(labels: &[usize], predicted: &[usize], classes: usize) -> Result<f64> {
    let names: Vec<String> = (0..classes).map(|c| c.to_string()).collect();
    Ok(super::metrics::classification_report(labels, predicted, &names)?.macro_f1)
}

/// Fine-tunes the top `config.fine_tune.layers` layers of `encoder` together with `head` (the
/// classifier trained on frozen embeddings) on `train`; with `val`, keeps the best epoch and
/// stops early. The epoch is chosen on the head's own logits: a post-hoc logit adjustment
/// applied later is not part of the choice, and a score on `val` afterwards is optimistic by
/// the choice. Resumable through `checkpoint` like [`super::classifier::train_mlp_resumable`].
#[allow(clippy::too_many_arguments)]
pub fn fine_tune(
    encoder: &SentenceEncoder,
    head: Mlp,
    train: TuneData,
    val: Option<TuneData>,
    config: &TextTrainConfig,
    device: &Device,
    checkpoint: Option<&TextCheckpointOptions>,
    on_epoch: &mut dyn FnMut(&TuneEpoch),
) -> Result<FineTuned> {
    config.validate()?;
    let tune = config.fine_tune.as_ref().ok_or_else(|| {
        Error::invalid("fine-tuning config", "the recipe has no fine_tune section")
    })?;
    tune.validate()?;
    if train.states.len() != train.labels.len() || train.states.is_empty() {
        return Err(Error::invalid(
            "fine-tuning data",
            format!(
                "{} texts but {} labels",
                train.states.len(),
                train.labels.len()
            ),
        ));
    }
    let classes = head.num_classes();
    for (what, d) in
        std::iter::once(("training", &train)).chain(val.as_ref().map(|v| ("validation", v)))
    {
        if d.states.len() != d.labels.len() {
            return Err(Error::invalid(
                "fine-tuning data",
                format!(
                    "{what}: {} texts but {} labels",
                    d.states.len(),
                    d.labels.len()
                ),
            ));
        }
        if let Some(bad) = d.labels.iter().find(|&&c| c >= classes) {
            return Err(Error::invalid(
                "fine-tuning data",
                format!("{what}: label {bad} out of range (0..{classes})"),
            ));
        }
    }
    let device = device.clone().autodiff();
    let k = tune.layers;
    let mut counts = vec![0usize; classes];
    for &c in train.labels {
        counts[c] += 1;
    }
    let loss = loss_fn(config, &counts)?;
    // `train()`: copies forked from a plain device do not track gradients until told to.
    let mut model = TunedClassifier::new(
        encoder.top_layers(k, &device)?,
        head.fork(&device),
        encoder.heads(),
    )
    .train();
    let fresh = || -> Vec<ModuleOptimizer> {
        let mut v: Vec<ModuleOptimizer> = (0..k)
            .map(|_| {
                AdamWConfig::new()
                    .with_weight_decay(tune.weight_decay as f32)
                    .init()
            })
            .collect();
        let decay =
            (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
        v.push(AdamConfig::new().with_weight_decay(decay).init());
        v
    };
    let mut optims = fresh();
    let data = match checkpoint {
        Some(_) => fingerprint(encoder, &train, val.as_ref()),
        None => String::new(),
    };
    let mut history = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    let mut best_bytes: Option<Vec<u8>> = None;
    let mut first = 0;
    if let Some(ck) = checkpoint.filter(|c| c.resume && c.path.exists()) {
        let bytes = crate::read_file(&ck.path)?;
        let (header, sections) = unseal(&bytes, MAGIC, VERSION, k + 3, "fine-tuning checkpoint")
            .map_err(Error::Checkpoint)?;
        let header: TuneCheckpointHeader = serde_json::from_slice(header)
            .map_err(|e| Error::Checkpoint(format!("unreadable header: {e}")))?;
        super::checkpoint::same_run(
            &ck.path,
            &header.config,
            config,
            header.data == data,
            "the training data or the encoder",
        )?;
        model = load_bytes(model, sections[0])?;
        best_bytes = (!sections[1].is_empty()).then(|| sections[1].to_vec());
        for (o, bytes) in optims.iter_mut().zip(&sections[2..]) {
            let fresh_o = std::mem::replace(o, AdamConfig::new().init());
            *o = crate::train::checkpoint::load_optimizer(fresh_o, bytes, sections[0])?;
        }
        (first, history, best) = (header.epoch, header.history, header.best);
    }
    let h = encoder.dim();
    let per_epoch = train.states.len().div_ceil(tune.batch_size);
    let total_steps = per_epoch * tune.epochs;
    let stale = |history: &[TuneEpoch], best: Option<(usize, f64)>| match best {
        Some((b, _)) if tune.patience > 0 => {
            history.last().is_some_and(|e| e.epoch >= b + tune.patience)
        }
        _ => false,
    };
    for epoch in first..tune.epochs {
        if stale(&history, best) {
            break;
        }
        if checkpoint
            .and_then(|c| c.stop_after_epochs)
            .is_some_and(|n| epoch - first >= n)
        {
            return Ok(FineTuned {
                model,
                history,
                kept_epoch: epoch.saturating_sub(1),
                resumed_at: first,
                completed: false,
            });
        }
        let clock = std::time::Instant::now();
        let seed = config.seed ^ 0x7475_6E65 ^ (epoch as u64).wrapping_mul(0x9E37_79B9);
        device.seed(seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut loss_sum = 0.0;
        let mut kinds = [0usize; 4];
        for (b, texts) in batches(train.states, tune.batch_size, seed)
            .iter()
            .enumerate()
        {
            let factor = tune.schedule(epoch * per_epoch + b, total_steps);
            let batch = Batch::new(train.states, texts, h, &device);
            let y = Tensor::<1, Int>::from_data(
                TensorData::new(
                    texts
                        .iter()
                        .map(|&t| train.labels[t] as i64)
                        .collect::<Vec<_>>(),
                    [texts.len()],
                ),
                &device,
            );
            let kind = config
                .rat
                .as_ref()
                .map_or(Perturbation::None, |r| r.draw(&mut rng));
            kinds[kind as usize] += 1;
            let emb = model.embed(&batch);
            let mut total = loss.forward(model.head.forward(emb.clone()), y.clone());
            if let Some(rat) = config.rat.as_ref().filter(|_| tune.token_rat) {
                if let Some(moved) =
                    perturb_tokens(kind, &model, &batch, &y, rat, tune.token_eps, &loss)
                {
                    total = total + loss.forward(model.forward(&moved), y) * rat.weight;
                }
            } else if let Some(rat) = &config.rat {
                let clean = emb.clone().detach();
                if let Some(moved) = perturb(kind, &model.head, &clean, &y, rat, &loss) {
                    // The perturbation is a constant; the gradient reaches the encoder
                    // through `emb`.
                    let delta = (moved - clean).detach();
                    total = total + loss.forward(model.head.forward(emb + delta), y) * rat.weight;
                }
            }
            loss_sum += total.clone().into_scalar::<f32>() as f64 * texts.len() as f64;
            let mut grads = total.backward();
            // Layers are stored bottom first: the top one (i = k − 1) gets `lr` itself.
            for (i, optim) in optims.iter_mut().enumerate().take(k) {
                let g = GradientsParams::from_module(&mut grads, &model.layers[i]);
                let lr = tune.lr * tune.layer_decay.powi((k - 1 - i) as i32) * factor;
                model = optim.step(lr, model, g);
            }
            let g = GradientsParams::from_module(&mut grads, &model.head);
            model = optims[k].step(tune.head_lr * factor, model, g);
        }
        let seconds = clock.elapsed().as_secs_f64();
        let val_macro_f1 = match &val {
            Some(v) => Some(macro_f1(
                v.labels,
                &predict(&model, v.states, &device),
                classes,
            )?),
            None => None,
        };
        let metrics = TuneEpoch {
            epoch,
            train_loss: loss_sum / train.states.len() as f64,
            val_macro_f1,
            perturbations: kinds,
            seconds,
        };
        if let Some(f1) = val_macro_f1
            && best.is_none_or(|(_, b)| f1 > b)
        {
            best = Some((epoch, f1));
            best_bytes = Some(record_bytes(&model)?);
        }
        history.push(metrics.clone());
        if let Some(ck) = checkpoint {
            let header = TuneCheckpointHeader {
                data: data.clone(),
                config: config.clone(),
                epoch: epoch + 1,
                history: history.clone(),
                best,
            };
            let header =
                serde_json::to_vec(&header).map_err(|e| Error::Checkpoint(e.to_string()))?;
            let weights = record_bytes(&model)?;
            let optim: Vec<Vec<u8>> = optims
                .iter()
                .map(|o| {
                    o.into_bytes()
                        .map(|b| b.to_vec())
                        .map_err(|e| Error::Checkpoint(e.to_string()))
                })
                .collect::<Result<_>>()?;
            let mut sections: Vec<&[u8]> = vec![&weights, best_bytes.as_deref().unwrap_or(&[])];
            sections.extend(optim.iter().map(Vec::as_slice));
            crate::write_atomically(&ck.path, &seal(MAGIC, VERSION, &header, &sections))?;
        }
        on_epoch(&metrics);
    }
    let last = history.last().map_or(0, |e| e.epoch);
    let (model, kept_epoch) = match (best, best_bytes) {
        (Some((epoch, _)), Some(bytes)) => (load_bytes(model, &bytes)?, epoch),
        _ => (model, last),
    };
    Ok(FineTuned {
        model,
        history,
        kept_epoch,
        resumed_at: first,
        completed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(warmup: f64) -> FineTuneConfig {
        FineTuneConfig {
            layers: 1,
            epochs: 1,
            batch_size: 1,
            lr: 1.0,
            layer_decay: 1.0,
            head_lr: 1.0,
            weight_decay: 0.0,
            warmup,
            patience: 0,
            token_rat: false,
            token_eps: 1.0,
        }
    }

    /// Warm-up climbs linearly to 1 by the last warm-up step, then the factor falls linearly
    /// and stays positive to the last step.
    #[test]
    fn the_schedule_warms_up_then_decays() {
        let c = config(0.2);
        let f: Vec<f64> = (0..10).map(|s| c.schedule(s, 10)).collect();
        assert_eq!(&f[..2], &[0.5, 1.0]);
        assert!((f[2] - 8.0 / 9.0).abs() < 1e-12, "{f:?}");
        assert!(f[2..].windows(2).all(|w| w[1] < w[0]), "{f:?}");
        assert!(f[9] > 0.0);
        // No warm-up still starts at step one's full rate.
        assert_eq!(config(0.0).schedule(0, 4), 1.0);
    }
}
