//! `rampart samples`: test images as JSON, for the demo page and the browser tests.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use rampart_core::data::Split;

use crate::load_split;

#[derive(Args)]
pub struct SamplesArgs {
    #[arg(long, default_value = "mnist")]
    dataset: String,
    #[arg(long, default_value_t = 32)]
    count: usize,
    #[arg(long)]
    out: PathBuf,
}

pub fn cmd_samples(a: SamplesArgs, data_dir: &Path) -> Result<()> {
    let (_, test) = load_split(&a.dataset, data_dir, Split::Test)?;
    let n = a.count.min(test.len());
    let images: Vec<&[f32]> = (0..n).map(|i| test.image(i)).collect();
    let json = serde_json::json!({"dataset": a.dataset, "shape": test.shape(), "labels": &test.labels[..n], "images": images});
    rampart_core::write_atomically(&a.out, json.to_string().as_bytes())?;
    println!("wrote {n} images to {}", a.out.display());
    Ok(())
}
