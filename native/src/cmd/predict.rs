//! `rampart predict`: logits and class probabilities of one image.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use rampart_core::bundle::Bundle;
use rampart_core::data::Split;
use rampart_core::eval::predict::{image_tensor, predict};

use crate::device::DeviceChoice;
use crate::load_split;

#[derive(Args)]
pub struct PredictArgs {
    #[arg(long)]
    bundle: PathBuf,
    /// Index of a test image.
    #[arg(long, conflicts_with = "pixels")]
    index: Option<usize>,
    /// A JSON file holding one image as an array of C×H×W numbers in [0, 1].
    #[arg(long)]
    pixels: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn cmd_predict(a: PredictArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let b = Bundle::load(&a.bundle)
        .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    let pixels: Vec<f32> = match (&a.index, &a.pixels) {
        (Some(i), None) => {
            let (_, test) = load_split(&b.header.dataset, data_dir, Split::Test)?;
            if *i >= test.len() {
                bail!(
                    "--index {i} is out of range: the test set has {} images",
                    test.len()
                );
            }
            test.image(*i).to_vec()
        }
        (None, Some(p)) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON array of numbers", p.display()))?
        }
        _ => bail!("give --index or --pixels"),
    };
    let dev = device.init()?;
    let x = image_tensor(&pixels, b.header.model.input_shape(), &dev)?;
    let model = b.model(&dev)?;
    let p = pollster::block_on(predict(&model, x, &b.header.class_names))?;
    if a.json {
        println!("{}", serde_json::to_string(&p)?);
    } else {
        println!("{} ({:.4})", p.label, p.probabilities[p.predicted]);
    }
    Ok(())
}
