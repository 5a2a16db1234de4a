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

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (the half-width factor of
/// a two-sided 95 % interval): tabulated to 30, then the Cornish–Fisher expansion around the
/// normal quantile, which is within 1e-4 from there on.
pub fn student_t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010,
        2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739,
        2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => {
            let (z, v) = (1.959_963_984_540_054_f64, df as f64);
            let p = |c: &[f64]| c.iter().rev().fold(0.0, |acc, k| acc * z * z + k) * z;
            z + p(&[1.0, 1.0]) / (4.0 * v)
                + p(&[3.0, 16.0, 5.0]) / (96.0 * v * v)
                + p(&[-15.0, 17.0, 19.0, 3.0]) / (384.0 * v.powi(3))
                + p(&[-945.0, -1920.0, 1482.0, 776.0, 79.0]) / (92160.0 * v.powi(4))
        }
    }
}

/// A 95 % interval for the mean of scores from repeated `folds`-fold cross-validation: the
/// corrected resampled t interval (Nadeau & Bengio 2003; Bouckaert & Frank 2004). The runs
/// share most of their training data, so the plain standard error `sd/√n` understates the
/// uncertainty; the variance is inflated by the test/train size ratio, `1/(folds − 1)`. NaN
/// bounds with fewer than two runs.
pub fn cv_interval95(values: &[f64], folds: usize) -> [f64; 2] {
    let n = values.len();
    let (mean, sd) = mean_sd(values);
    if n < 2 || folds < 2 {
        return [f64::NAN, f64::NAN];
    }
    let half = student_t_975(n - 1) * sd * (1.0 / n as f64 + 1.0 / (folds - 1) as f64).sqrt();
    [mean - half, mean + half]
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
