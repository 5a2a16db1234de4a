//! Helpers shared by the core tests: tiny models and synthetic data.
#![allow(dead_code)]

use burn::tensor::{Device, Int, Tensor, TensorData};
use rampart_core::data::ImageDataset;
use rampart_core::model::{CnnConfig, Model, ModelConfig};

pub fn cpu() -> Device {
    Device::flex()
}

/// A small CNN for 1×8×8 inputs and `k` classes.
pub fn tiny_config(k: usize) -> ModelConfig {
    ModelConfig::Cnn(CnnConfig::madry(1, 8, 8, k).with_widths([4, 8], 16))
}

pub fn tiny_model(seed: u64) -> Model {
    tiny_config(3).init_seeded(&cpu(), seed).unwrap()
}

/// Deterministic pseudo-random values in [0, 1].
pub fn pixels(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32) / ((1u64 << 24) as f32)
        })
        .collect()
}

pub fn images(n: usize, seed: u64, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(pixels(n * 64, seed), [n, 1, 8, 8]), device)
}

pub fn labels(values: &[i64], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// A learnable 3-class problem on 8×8 images: a bright bar in the top, middle or bottom
/// third, on a noisy background.
pub fn bars(n: usize, seed: u64) -> ImageDataset {
    let noise = pixels(n * 64, seed);
    let mut images = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 3;
        for r in 0..8 {
            for c in 0..8 {
                let bar = r / 3 == class || (class == 2 && r == 8 - 1);
                let base = 0.3 * noise[i * 64 + r * 8 + c];
                images.push(if bar { (0.6 + base).min(1.0) } else { base });
            }
        }
        labels.push(class);
    }
    ImageDataset::new(
        images,
        labels,
        [1, 8, 8],
        vec!["top".into(), "middle".into(), "bottom".into()],
    )
    .unwrap()
}
