//! `rampart text explain` and `rampart text probe`: per-word importance of one report, and
//! the smallest changes that flip its prediction.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use rampart_core::bundle::TextBundle;
use rampart_core::text::explain;

use super::{EncoderArgs, open_for_bundle};
use crate::device::DeviceChoice;

#[derive(Args)]
pub struct TextExplainArgs {
    #[arg(long)]
    pub(super) bundle: PathBuf,
    /// The report text.
    pub(super) text: String,
    /// Explain this class index instead of the prediction.
    #[arg(long)]
    pub(super) class: Option<usize>,
    #[command(flatten)]
    pub(super) encoder: EncoderArgs,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args)]
pub struct TextProbeArgs {
    #[arg(long)]
    pub(super) bundle: PathBuf,
    /// The report text.
    pub(super) text: String,
    /// Largest embedding perturbation tried (L2; embeddings have norm 1).
    #[arg(long, default_value_t = 2.0)]
    pub(super) max_radius: f32,
    /// Remove at most this many words.
    #[arg(long, default_value_t = 20)]
    pub(super) max_words: usize,
    #[command(flatten)]
    pub(super) encoder: EncoderArgs,
    #[arg(long)]
    pub(super) json: bool,
}

pub fn cmd_explain(a: TextExplainArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let bundle = TextBundle::load(&a.bundle)?;
    let embedder = open_for_bundle(&a.encoder, data_dir, device, &bundle)?;
    let model = bundle.model(&embedder.device)?;
    let e = pollster::block_on(explain::explain(
        &embedder.encoder,
        &model,
        &a.text,
        a.class,
        &embedder.device,
    ))?;
    if a.json {
        let mut v = serde_json::to_value(&e)?;
        v["label"] = bundle.header.class_names[e.class].clone().into();
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} ({:.4}); {}",
        bundle.header.class_names[e.class], e.probabilities[e.class], e.method
    );
    let mut words: Vec<(&str, f32)> = e.words().collect();
    words.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    for (w, v) in words.iter().take(15) {
        println!("{v:>+9.4}  {w}");
    }
    Ok(())
}

pub fn cmd_probe(a: TextProbeArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let bundle = TextBundle::load(&a.bundle)?;
    let embedder = open_for_bundle(&a.encoder, data_dir, device, &bundle)?;
    let model = bundle.model(&embedder.device)?;
    let config = explain::ProbeConfig {
        max_radius: a.max_radius,
        max_words: a.max_words,
        ..Default::default()
    };
    let p = pollster::block_on(explain::probe(
        &embedder.encoder,
        &model,
        &a.text,
        &config,
        &embedder.device,
    ))?;
    let names = &bundle.header.class_names;
    if a.json {
        let mut v = serde_json::to_value(&p)?;
        v["label"] = names[p.predicted].clone().into();
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} ({:.4})",
        names[p.predicted], p.probabilities[p.predicted]
    );
    match &p.embedding {
        Some(f) => println!(
            "embedding: a perturbation of L2 norm {:.4} flips it to {}",
            f.radius, names[f.class]
        ),
        None => println!("embedding: nothing within {} flips it", a.max_radius),
    }
    match &p.removal {
        Some(f) => println!(
            "removing {} word(s) [{}] flips it to {}",
            f.words.len(),
            f.words.join(", "),
            names[f.class]
        ),
        None => println!(
            "removing its {} most important words does not flip it",
            a.max_words
        ),
    }
    Ok(())
}
