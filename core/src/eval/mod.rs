//! Clean and robust accuracy, per attack and per ε, and the confusion matrix. Reads are
//! asynchronous so the same code runs in a browser; native callers block on the future.

pub mod diagnose;
pub mod predict;
pub mod report;
pub mod suite;

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::attack::Attack;
use crate::data::ImageDataset;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::tensor_io::{read_bools, read_ints};

/// Robust accuracy under one attack at one budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustAccuracy {
    pub attack: String,
    pub eps: f32,
    pub steps: usize,
    pub restarts: usize,
    /// Fraction of samples classified correctly and not broken by the attack.
    pub accuracy: f64,
}

/// An evaluation report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub samples: usize,
    pub clean_accuracy: f64,
    pub robust: Vec<RobustAccuracy>,
    /// `confusion[true][predicted]` on clean inputs.
    pub confusion: Vec<Vec<usize>>,
    pub class_names: Vec<String>,
}

/// Evaluates `model` on `data`: clean accuracy, confusion matrix, and robust accuracy under
/// each attack at each ε. `progress(done, total)` is called after each batch of attack work.
#[allow(clippy::too_many_arguments)] // one call site per front end; a struct would only rename them
pub async fn evaluate(
    model: &Model,
    data: &ImageDataset,
    attacks: &[Box<dyn Attack>],
    eps: &[f32],
    batch_size: usize,
    device: &Device,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    if data.is_empty() {
        return Err(Error::invalid("evaluation data", "is empty"));
    }
    let k = data.num_classes();
    let batches: Vec<Vec<usize>> = (0..data.len())
        .collect::<Vec<_>>()
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let total = batches.len() * (1 + attacks.len() * eps.len());
    let mut done = 0;
    let inference = model.valid();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut clean_ok = vec![false; data.len()];
    for idx in &batches {
        let (x, _) = data.batch(idx, device);
        let pred = read_ints(inference.forward(x).argmax(1).squeeze_dim::<1>(1)).await?;
        for (&i, &p) in idx.iter().zip(&pred) {
            confusion[data.labels[i]][p as usize] += 1;
            clean_ok[i] = data.labels[i] == p as usize;
        }
        done += 1;
        progress(done, total);
    }
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let mut robust = Vec::new();
    for attack in attacks {
        for &e in eps {
            let mut held = 0usize;
            for (b, idx) in batches.iter().enumerate() {
                let (x, y) = data.batch(idx, device);
                let out = attack.run(
                    model,
                    x,
                    y,
                    &vec![e; idx.len()],
                    seed.wrapping_add(b as u64),
                )?;
                // Robust: right on the clean input and not broken (an attack that moves a
                // wrong prediction to the right class does not make the sample robust).
                held += read_bools(out.success)
                    .await?
                    .iter()
                    .zip(idx)
                    .filter(|(s, i)| !**s && clean_ok[**i])
                    .count();
                done += 1;
                progress(done, total);
            }
            robust.push(RobustAccuracy {
                attack: attack.name(),
                eps: e,
                steps: attack.budget().0,
                restarts: attack.budget().1,
                accuracy: held as f64 / data.len() as f64,
            });
        }
    }
    Ok(EvalReport {
        samples: data.len(),
        clean_accuracy: correct as f64 / data.len() as f64,
        robust,
        confusion,
        class_names: data.class_names.clone(),
    })
}
