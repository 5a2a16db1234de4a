//! `rampart bench-step`: times adversarial-training steps (bench/at_step.sh compares them
//! with PyTorch).

use std::path::Path;

use anyhow::{Result, bail};
use clap::Args;
use rampart_core::data::{ImageDataset, Split};
use rampart_core::train::{Method, TrainConfig};

use crate::args::ArchArgs;
use crate::device::DeviceChoice;
use crate::load_split;

#[derive(Args)]
pub struct BenchStepArgs {
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// PGD steps per training step (0: standard training).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[command(flatten)]
    pub arch: ArchArgs,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Time on seeded random images of this shape (10 classes) instead of MNIST, e.g.
    /// 3,32,32 for the CIFAR-10 layout.
    #[arg(long, value_delimiter = ',')]
    synthetic: Option<Vec<usize>>,
    /// Training ε and PGD step (default 0.3 and 0.01, MNIST's).
    #[arg(long, default_value_t = 0.3)]
    eps: f32,
    #[arg(long, default_value_t = 0.01)]
    step_size: f32,
}

pub fn cmd_bench_step(a: BenchStepArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    use rampart_core::train::{optimizer, train_step};
    let train_set = match a.synthetic.as_deref() {
        None => load_split("mnist", data_dir, Split::Train)?.1,
        Some(&[c, h, w]) => {
            let n = a.batch_size * 4;
            let mut state = 0x2545_F491_4F6C_DD1Du64;
            let pixels = (0..n * c * h * w)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect();
            ImageDataset::new(
                pixels,
                (0..n).map(|i| i % 10).collect(),
                [c, h, w],
                (0..10).map(|k| k.to_string()).collect(),
            )?
        }
        Some(_) => bail!("--synthetic takes C,H,W, e.g. 3,32,32"),
    };
    let model_config = a.arch.config(train_set.shape(), 10)?;
    let method = if a.steps == 0 {
        Method::Standard
    } else {
        Method::PgdAt {
            eps: a.eps,
            steps: a.steps,
            step_size: a.step_size,
        }
    };
    let config = TrainConfig::new(method.clone());
    let dev = device.init()?.autodiff();
    let mut model = model_config.init(&dev)?;
    let mut optim = optimizer(&config);
    let batches = train_set.epoch_batches(a.batch_size, 0, 0);
    let mut times = Vec::new();
    for i in 0..a.warmup + a.iters {
        let (x, y) = train_set.batch(&batches[i % batches.len()], &dev);
        let t0 = std::time::Instant::now();
        // train_step reads the loss back, so the step has finished when it returns.
        let (next, _, _) = train_step(&method, model, &mut optim, x, y, a.eps, 1e-3, i as u64)?;
        model = next;
        if i >= a.warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{}",
        serde_json::json!({"framework": "rampart", "device": format!("{device:?}").to_lowercase(),
            "kernels": if rampart_core::kernels::serves(&dev) { "rampart" } else { "burn" },
            "arch": model_config.arch_label(), "batch_size": a.batch_size,
            "pgd_steps": a.steps, "median_ms": median, "mean_ms": mean, "iters": a.iters})
    );
    Ok(())
}
