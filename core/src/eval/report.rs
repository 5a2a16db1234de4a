//! Typed reports that both front ends serialise: a training run's metrics (also stored in
//! its bundle) and a suite's leaderboard row in RobustBench's model-card fields.

use serde::{Deserialize, Serialize};

use super::EvalReport;
use super::suite::SuiteReport;
use crate::train::EpochMetrics;

/// Test-set figures of a finished training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestMetrics {
    pub test_clean_accuracy: f64,
    pub test_samples: usize,
    /// Mean of the per-class recalls, for imbalanced training sets.
    pub test_balanced_accuracy: f64,
    pub test_per_class_recall: Vec<f64>,
}

impl TestMetrics {
    pub fn from_eval(report: &EvalReport) -> Self {
        let recall: Vec<f64> = report
            .confusion
            .iter()
            .enumerate()
            .map(|(c, row)| row[c] as f64 / row.iter().sum::<usize>().max(1) as f64)
            .collect();
        Self {
            test_clean_accuracy: report.clean_accuracy,
            test_samples: report.samples,
            test_balanced_accuracy: recall.iter().sum::<f64>() / recall.len().max(1) as f64,
            test_per_class_recall: recall,
        }
    }
}

/// The metrics of `rampart train` (its `--json` output and `<out>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub dataset: String,
    pub method: String,
    pub balance: String,
    pub train_class_counts: Vec<usize>,
    pub history: Vec<EpochMetrics>,
    /// 1-based, like the progress lines.
    pub kept_epoch: Option<usize>,
    pub train_seconds: f64,
    /// Absent when the run skipped the test evaluation.
    #[serde(flatten)]
    pub test: Option<TestMetrics>,
}

/// A suite result as RobustBench's model cards give it, percentages as numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leaderboard {
    pub name: Option<String>,
    pub dataset: String,
    pub threat_model: String,
    pub eps: f32,
    pub architecture: String,
    pub training_method: String,
    pub additional_data: bool,
    pub clean_acc: f64,
    pub autoattack_acc: f64,
    pub evaluation: String,
    /// A sanity check flagged the evaluation.
    pub unreliable: bool,
    pub samples: usize,
}

/// What a model was, for its leaderboard row.
#[derive(Debug, Clone)]
pub struct ModelCard<'a> {
    pub name: Option<String>,
    pub dataset: &'a str,
    pub architecture: &'a str,
    pub training_method: &'a str,
}

fn percent(fraction: f64) -> f64 {
    (10000.0 * fraction).round() / 100.0
}

impl Leaderboard {
    pub fn new(card: &ModelCard, report: &SuiteReport) -> Self {
        Self {
            name: card.name.clone(),
            dataset: card.dataset.into(),
            threat_model: "Linf".into(),
            eps: report.eps,
            architecture: card.architecture.into(),
            training_method: card.training_method.into(),
            additional_data: false,
            clean_acc: percent(report.clean_accuracy),
            autoattack_acc: percent(report.robust_accuracy),
            evaluation: format!("rampart eval --suite {}", report.suite.name()),
            unreliable: report.sanity.as_ref().is_some_and(|s| !s.flags.is_empty()),
            samples: report.samples,
        }
    }

    /// The row as a markdown table with its header, in RobustBench's columns.
    pub fn markdown(&self, report: &SuiteReport) -> String {
        format!(
            "| Model | Dataset | Threat model | Clean accuracy | Robust accuracy ({suite}) | \
             Evaluation potentially unreliable | Architecture | Training |\n\
             |---|---|---|---|---|---|---|---|\n\
             | {name} | {dataset} | L∞ ε = {eps} | {clean:.2} % | {robust:.2} % | {unreliable} | \
             {arch} | {method} |\n",
            suite = report.suite.name(),
            name = self.name.as_deref().unwrap_or("model"),
            dataset = self.dataset,
            eps = self.eps,
            clean = 100.0 * report.clean_accuracy,
            robust = 100.0 * report.robust_accuracy,
            unreliable = if self.unreliable {
                "YES (see flags)"
            } else {
                "no"
            },
            arch = self.architecture,
            method = self.training_method,
        )
    }
}

/// `rampart eval --suite`'s JSON: the report, its leaderboard row and the wall time.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteRun {
    pub report: SuiteReport,
    pub leaderboard: Leaderboard,
    pub seconds: f64,
}
