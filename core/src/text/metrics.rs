//! Classification metrics for imbalanced problems: accuracy, per-class precision / recall /
//! F1, macro- and weighted-F1, and the confusion matrix. A class with no predictions has
//! precision 0, one with no examples recall 0 (scikit-learn's `zero_division=0`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Examples of this class.
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    pub samples: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// The report for `predicted` against `truth`, classes named by `class_names`.
pub fn classification_report(
    truth: &[usize],
    predicted: &[usize],
    class_names: &[String],
) -> Result<ClassificationReport> {
    let k = class_names.len();
    if truth.len() != predicted.len() {
        return Err(Error::invalid(
            "metrics",
            format!("{} labels but {} predictions", truth.len(), predicted.len()),
        ));
    }
    if truth.is_empty() {
        return Err(Error::invalid("metrics", "no samples"));
    }
    if let Some(bad) = truth.iter().chain(predicted).find(|&&c| c >= k) {
        return Err(Error::invalid(
            "metrics",
            format!("class {bad} out of range (0..{k})"),
        ));
    }
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in truth.iter().zip(predicted) {
        confusion[t][p] += 1;
    }
    let n = truth.len();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c];
            let support: usize = confusion[c].iter().sum();
            let predicted_c: usize = (0..k).map(|t| confusion[t][c]).sum();
            let precision = ratio(tp, predicted_c);
            let recall = ratio(tp, support);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassMetrics {
                class: class_names[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let macro_f1 = per_class.iter().map(|m| m.f1).sum::<f64>() / k as f64;
    let weighted_f1 = per_class
        .iter()
        .map(|m| m.f1 * m.support as f64)
        .sum::<f64>()
        / n as f64;
    Ok(ClassificationReport {
        samples: n,
        accuracy: correct as f64 / n as f64,
        macro_f1,
        weighted_f1,
        per_class,
        confusion,
    })
}

/// Mean and sample standard deviation.
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let sd = if n < 2 {
        0.0
    } else {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    };
    (mean, sd)
}
