//! `rampart-core`: robust classifiers on Burn — data, models (image CNNs and a BERT sentence
//! encoder for text), adversarial attacks,
//! robust losses, training, evaluation and bundles. Device-agnostic: the same code runs on
//! Burn's CPU backend, natively on wgpu, and in a browser on WebGPU.

pub mod attack;
pub mod bundle;
pub mod data;
pub mod error;
pub mod eval;
pub mod export;
pub mod gradient;
pub mod io;
pub mod kernels;
pub mod loss;
pub mod model;
pub mod progress;
pub mod tensor_io;
pub mod text;
pub mod train;

pub use error::{Error, Result};
pub use io::{read_file, write_atomically};

/// Index of the largest value (the first among equals; 0 for an empty slice).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map_or(0, |(i, _)| i)
}
