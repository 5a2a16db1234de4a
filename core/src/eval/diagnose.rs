//! Model diagnosis with SIA: which semantic attributes break a model. Over a dataset, the
//! attack runs on every correctly classified image; for each successful attack the change of
//! each attribute is normalised by its range, giving (a) the *mass* per attribute (share of the
//! total normalised change) and (b) the *dominant* attribute (the one that moved most), overall
//! and per true class. A single-attribute sweep adds the accuracy as each attribute alone goes
//! over its range (the others at 0, no pixel perturbation).

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::attack::AttackLoss;
use crate::attack::semantic::{Attribute, AttributeSpace, Sia, SiaConfig};
use crate::attack::spec::MAX_STEPS;
use crate::data::ImageDataset;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::tensor_io::{read_floats, read_ints};

/// Attribute statistics over a set of successful attacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Successful attacks counted.
    pub attacks: usize,
    /// Per attribute: share of the total range-normalised change (sums to 1 when any).
    pub mass: Vec<f32>,
    /// Per attribute: how many attacks it dominated.
    pub dominant: Vec<usize>,
}

impl Histogram {
    fn new(k: usize) -> Self {
        Self {
            attacks: 0,
            mass: vec![0.0; k],
            dominant: vec![0; k],
        }
    }

    fn add(&mut self, change: &[f32]) {
        self.attacks += 1;
        for (m, c) in self.mass.iter_mut().zip(change) {
            *m += c;
        }
        if let Some((best, _)) = change.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) {
            self.dominant[best] += 1;
        }
    }

    fn normalise(&mut self) {
        let total: f32 = self.mass.iter().sum();
        if total > 0.0 {
            self.mass.iter_mut().for_each(|m| *m /= total);
        }
    }
}

/// Accuracy as one attribute alone sweeps its range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub attribute: Attribute,
    pub values: Vec<f32>,
    pub accuracy: Vec<f32>,
    /// Share of the images classified correctly at every value of the sweep: robust
    /// accuracy against this attribute alone (grid search over its range).
    #[serde(default)]
    pub worst_case_accuracy: f32,
}

/// One successfully attacked image, for galleries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub index: usize,
    pub label: usize,
    pub predicted: usize,
    /// Final coefficient per attribute (natural units).
    pub coefficients: Vec<f32>,
    /// The adversarial image (only with [`DiagnoseSettings::keep_images`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adversarial: Vec<f32>,
}

/// How much of a dataset to diagnose, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnoseSettings {
    /// L∞ pixel budget besides the attributes (0: purely semantic).
    pub eps: f32,
    /// The first `limit` images.
    pub limit: usize,
    pub batch_size: usize,
    /// Values per attribute in the single-attribute sweep (0: none).
    pub sweep_points: usize,
    pub seed: u64,
    /// Keep the adversarial images of the examples.
    pub keep_images: bool,
}

/// The SIA attack of a diagnosis as the front ends describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnoseAttack {
    /// Attribute names; empty: every attribute that applies to the images.
    pub attributes: Vec<String>,
    pub steps: usize,
    /// Attribute step per iteration as a fraction of its range.
    pub attribute_step: f32,
    pub loss: AttackLoss,
}

impl DiagnoseAttack {
    /// The validated SIA settings for images of `channels` channels.
    pub fn sia_config(&self, channels: usize) -> Result<SiaConfig> {
        if self.steps == 0 || self.steps > MAX_STEPS {
            return Err(Error::invalid(
                "diagnose",
                format!("steps must be in 1..={MAX_STEPS}, got {}", self.steps),
            ));
        }
        let mut config = SiaConfig::new(channels);
        if !self.attributes.is_empty() {
            config.attributes = self
                .attributes
                .iter()
                .map(|n| n.parse())
                .collect::<Result<_>>()?;
        }
        config.steps = self.steps;
        config.attribute_step = self.attribute_step;
        config.loss = self.loss;
        Ok(config)
    }
}

impl DiagnoseSettings {
    pub fn validate(&self) -> Result<()> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::invalid(
                "diagnose",
                format!("eps must be a finite number ≥ 0, got {}", self.eps),
            ));
        }
        if self.sweep_points > MAX_SWEEP_POINTS {
            return Err(Error::invalid(
                "diagnose",
                format!("sweep points must be at most {MAX_SWEEP_POINTS}"),
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("diagnose", "batch size must be ≥ 1"));
        }
        Ok(())
    }
}

/// The most values one attribute's sweep may take.
pub const MAX_SWEEP_POINTS: usize = 101;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub attributes: Vec<Attribute>,
    pub eps: f32,
    pub steps: usize,
    pub samples: usize,
    pub clean_correct: usize,
    /// Successful attacks / correctly classified images.
    pub success_rate: f32,
    pub overall: Histogram,
    pub per_class: Vec<Histogram>,
    pub class_names: Vec<String>,
    pub sweeps: Vec<Sweep>,
    pub examples: Vec<Example>,
}

/// Runs the diagnosis (see the module docs).
pub async fn diagnose(
    model: &Model,
    data: &ImageDataset,
    config: &SiaConfig,
    settings: &DiagnoseSettings,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Diagnosis> {
    let DiagnoseSettings {
        eps,
        limit,
        batch_size,
        sweep_points,
        seed,
        keep_images,
    } = *settings;
    settings.validate()?;
    let n = limit.min(data.len());
    if n == 0 {
        return Err(Error::invalid("diagnose", "no images"));
    }
    let sia = Sia::new(config.clone())?;
    let space = AttributeSpace::new(config.attributes.clone(), data.channels)?;
    let k = space.len();
    let classes = data.num_classes();
    let mut overall = Histogram::new(k);
    let mut per_class = vec![Histogram::new(k); classes];
    let mut examples = Vec::new();
    let mut clean_correct = 0;
    let inference = model.valid();
    let batches: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let total = batches.len() * (1 + sweep_points.min(1) * k);
    let mut done = 0;
    for (b, idx) in batches.iter().enumerate() {
        let (x, y) = data.batch(idx, device);
        let clean = read_ints(inference.forward(x.clone()).argmax(1).squeeze_dim::<1>(1)).await?;
        let out = sia.run_detailed(
            model,
            x,
            y,
            &vec![eps; idx.len()],
            seed.wrapping_add(b as u64),
        )?;
        let after = read_ints(
            inference
                .forward(out.adversarial.clone())
                .argmax(1)
                .squeeze_dim::<1>(1),
        )
        .await?;
        let adversarial = if keep_images {
            read_floats(out.adversarial).await?
        } else {
            Vec::new()
        };
        let per = data.channels * data.height * data.width;
        let coef = read_floats(out.coefficients).await?;
        for (r, &i) in idx.iter().enumerate() {
            let label = data.labels[i];
            if clean[r] as usize != label {
                continue;
            }
            clean_correct += 1;
            if after[r] as usize == label {
                continue;
            }
            let c = &coef[r * k..(r + 1) * k];
            let change: Vec<f32> = c
                .iter()
                .zip(&space.attributes)
                .map(|(v, a)| {
                    let (lo, hi) = a.range();
                    v.abs() / (hi - lo)
                })
                .collect();
            overall.add(&change);
            per_class[label].add(&change);
            if examples.len() < 64 {
                examples.push(Example {
                    index: i,
                    label,
                    predicted: after[r] as usize,
                    coefficients: c.to_vec(),
                    adversarial: if keep_images {
                        adversarial[r * per..(r + 1) * per].to_vec()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
        done += 1;
        progress(done, total);
    }
    overall.normalise();
    per_class.iter_mut().for_each(Histogram::normalise);
    let mut sweeps = Vec::new();
    if sweep_points > 0 {
        for &a in &space.attributes {
            let single = AttributeSpace::new(vec![a], data.channels)?;
            let (lo, hi) = a.range();
            let values: Vec<f32> = (0..sweep_points)
                .map(|s| lo + (hi - lo) * s as f32 / (sweep_points.max(2) - 1) as f32)
                .collect();
            let mut correct = vec![0usize; values.len()];
            let mut always = 0usize;
            for (b, idx) in batches.iter().enumerate() {
                let (x, _) = data.batch(idx, device);
                let m = idx.len();
                // The same field as the attack on this batch drew; only elastic needs one.
                let field = (a == Attribute::Elastic).then(|| {
                    crate::attack::semantic::elastic_field(
                        m,
                        data.height,
                        data.width,
                        seed.wrapping_add(b as u64),
                        device,
                    )
                });
                let mut held = vec![true; m];
                for (s, &v) in values.iter().enumerate() {
                    let coef = Tensor::<2>::from_data(TensorData::new(vec![v; m], [m, 1]), device);
                    let moved = single.apply(x.clone(), coef, field.as_ref());
                    let pred =
                        read_ints(inference.forward(moved).argmax(1).squeeze_dim::<1>(1)).await?;
                    for (j, (i, p)) in idx.iter().zip(&pred).enumerate() {
                        let ok = data.labels[*i] == *p as usize;
                        correct[s] += usize::from(ok);
                        held[j] &= ok;
                    }
                }
                always += held.iter().filter(|h| **h).count();
                done += 1;
                progress(done, total);
            }
            sweeps.push(Sweep {
                attribute: a,
                values,
                accuracy: correct.iter().map(|&c| c as f32 / n as f32).collect(),
                worst_case_accuracy: always as f32 / n as f32,
            });
        }
    }
    Ok(Diagnosis {
        attributes: space.attributes.clone(),
        eps,
        steps: config.steps,
        samples: n,
        clean_correct,
        success_rate: overall.attacks as f32 / clean_correct.max(1) as f32,
        overall,
        per_class,
        class_names: data.class_names.clone(),
        sweeps,
        examples,
    })
}
