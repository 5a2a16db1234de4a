//! Square Attack (Andriushchenko et al. 2020), L∞, score-based black box: it reads only the
//! logits. Starts from vertical stripes of ±ε, then each query replaces one random square
//! window of the perturbation by ±ε per channel and keeps it for the samples whose margin
//! `z_y − max_{j≠y} z_j` dropped; the window's side shrinks on the published schedule.
//! As in the reference release, one window and one sign pattern per query serve the whole
//! batch. Needs no gradient, so gradient masking does not stop it.

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Attack, AttackOutput, Norm, check_inputs, eps_tensor, project, rows, success};
use crate::error::{Error, Result};
use crate::loss::cw_margin_per_sample;
use crate::model::Model;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SquareConfig {
    /// Queries (forward passes) per sample (AutoAttack: 5000).
    pub queries: usize,
    /// Initial share of the image a window covers (0.8).
    pub p_init: f32,
}

impl SquareConfig {
    pub fn new(queries: usize) -> Self {
        Self {
            queries,
            p_init: 0.8,
        }
    }

    pub fn init(self) -> Result<Square> {
        if self.queries == 0 || !(self.p_init > 0.0 && self.p_init <= 1.0) {
            return Err(Error::invalid(
                "square config",
                "queries must be ≥ 1 and p_init in (0, 1]",
            ));
        }
        Ok(Square { config: self })
    }
}

#[derive(Debug, Clone)]
pub struct Square {
    config: SquareConfig,
}

impl Square {
    /// The window's share of the image at query `i`: halved at the published iteration
    /// marks, rescaled to the query budget.
    fn p_at(&self, i: usize) -> f32 {
        let it = (i as f64 / self.config.queries as f64 * 10_000.0) as usize;
        let halvings = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]
            .iter()
            .filter(|&&m| it > m)
            .count();
        self.config.p_init / (1u32 << halvings) as f32
    }
}

/// `z_y − max_{j≠y} z_j`: ≤ 0 once misclassified.
fn margin(model: &Model, x: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<1> {
    cw_margin_per_sample(model.forward(x), labels).neg()
}

impl Attack for Square {
    fn budget(&self) -> (usize, usize) {
        (self.config.queries, 1)
    }

    fn name(&self) -> String {
        "square".into()
    }

    fn run(
        &self,
        model: &Model,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        eps: &[f32],
        seed: u64,
    ) -> Result<AttackOutput> {
        check_inputs(&images, &labels, eps)?;
        let model = model.valid();
        let x = images.detach().without_autodiff();
        let labels = labels.without_autodiff();
        let device = x.device();
        let [n, c, h, w] = x.dims();
        let eps_t = eps_tensor(eps, &x);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sign = |rng: &mut ChaCha8Rng, len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                .collect()
        };
        // Vertical stripes: one sign per sample, channel and column.
        let stripes = Tensor::<4>::from_data(
            TensorData::new(sign(&mut rng, n * c * w), [n, c, 1, w]),
            &device,
        );
        let mut best = (x.clone() + stripes * eps_t.clone()).clamp(0.0, 1.0);
        let mut best_margin = margin(&model, best.clone(), labels.clone());
        let side_max = h.min(w).saturating_sub(1).max(1);
        for i in 0..self.config.queries {
            crate::progress::tick();
            let p = self.p_at(i);
            let s = ((p * (h * w) as f32).sqrt().round() as usize).clamp(1, side_max);
            let top = rng.random_range(0..=h - s);
            let left = rng.random_range(0..=w - s);
            let mut window = vec![0f32; h * w];
            for r in top..top + s {
                window[r * w + left..r * w + left + s].fill(1.0);
            }
            let window = Tensor::<4>::from_data(TensorData::new(window, [1, 1, h, w]), &device);
            let signs =
                Tensor::<4>::from_data(TensorData::new(sign(&mut rng, c), [1, c, 1, 1]), &device);
            // ±2ε on the window then back into the ball: the window becomes x ± ε.
            let candidate = project(
                &x,
                best.clone() + window * signs * eps_t.clone() * 2.0,
                &eps_t,
                Norm::Linf,
            );
            let m = margin(&model, candidate.clone(), labels.clone());
            // Only samples not yet broken move, and only when their margin dropped.
            let take = m
                .clone()
                .lower(best_margin.clone())
                .bool_and(best_margin.clone().greater_elem(0.0));
            best = best.mask_where(rows(&take, &x), candidate);
            best_margin = best_margin.mask_where(take, m);
        }
        let success = success(&model, best.clone(), labels, false);
        Ok(AttackOutput {
            adversarial: best,
            success,
        })
    }
}
