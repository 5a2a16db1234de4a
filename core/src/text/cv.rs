//! Repeated stratified k-fold cross-validation splits.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// The fold (0..k) of each sample: every class is shuffled (seeded) and dealt round-robin
/// over the folds, so each fold holds ⌊n_c/k⌋ or ⌈n_c/k⌉ samples of class c. Successive classes
/// continue the deal where the previous one stopped, so small classes do not all start in
/// fold 0.
pub fn stratified_folds(labels: &[usize], k: usize, seed: u64) -> Result<Vec<usize>> {
    if k < 2 || k > labels.len() {
        return Err(Error::invalid(
            "cross-validation",
            format!(
                "needs 2 ≤ folds ≤ samples, got {k} folds for {} samples",
                labels.len()
            ),
        ));
    }
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0usize; labels.len()];
    let mut next = 0usize;
    for c in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        members.shuffle(&mut rng);
        for i in members {
            fold[i] = next % k;
            next += 1;
        }
    }
    Ok(fold)
}
