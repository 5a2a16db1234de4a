//! `rampart text eval` and `rampart text predict`: metrics on a labelled file, and one
//! report's class probabilities.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

use rampart_core::argmax;
use rampart_core::bundle::TextBundle;
use rampart_core::text::classifier::{evaluate, predict_proba};
use rampart_core::text::data::{load_osha, report_text};

use super::{EncoderArgs, embed, open_for_bundle};
use crate::device::DeviceChoice;

#[derive(Args)]
pub struct TextEvalArgs {
    #[arg(long)]
    pub(super) bundle: PathBuf,
    /// A JSON file in the OSHA format.
    #[arg(long)]
    pub(super) data: PathBuf,
    #[command(flatten)]
    pub(super) encoder: EncoderArgs,
    /// Print one JSON object (accuracy, macro_f1, weighted_f1, per_class, confusion).
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args)]
pub struct TextPredictArgs {
    #[arg(long)]
    pub(super) bundle: PathBuf,
    /// The report text.
    pub(super) text: String,
    #[command(flatten)]
    pub(super) encoder: EncoderArgs,
    #[arg(long)]
    pub(super) json: bool,
}

pub fn cmd_eval(a: TextEvalArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let bundle = TextBundle::load(&a.bundle)?;
    let data = load_osha(&a.data)?;
    let mut embedder = open_for_bundle(&a.encoder, data_dir, device, &bundle)?;
    let x = embed(&mut embedder, &data.texts())?;
    let report = pollster::block_on(evaluate(
        &bundle.model(&embedder.device)?,
        &x,
        &data.labels(),
        &bundle.header.class_names,
        &embedder.device,
    ))?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "{} reports: accuracy {:.4}  macro-F1 {:.4}  weighted-F1 {:.4}",
        report.samples, report.accuracy, report.macro_f1, report.weighted_f1
    );
    println!(
        "{:>9} {:>9} {:>9} {:>8}  class",
        "precision", "recall", "f1", "support"
    );
    for c in &report.per_class {
        println!(
            "{:>9.4} {:>9.4} {:>9.4} {:>8}  {}",
            c.precision, c.recall, c.f1, c.support, c.class
        );
    }
    Ok(())
}

pub fn cmd_predict(a: TextPredictArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let bundle = TextBundle::load(&a.bundle)?;
    let text = report_text(&a.text, "");
    if text.is_empty() {
        bail!("the report text is empty");
    }
    let mut embedder = open_for_bundle(&a.encoder, data_dir, device, &bundle)?;
    let x = embed(&mut embedder, &[&text])?;
    let model = bundle.model(&embedder.device)?;
    let probs = pollster::block_on(predict_proba(&model, &x, &embedder.device))?.remove(0);
    let best = argmax(&probs);
    if a.json {
        let classes: Vec<_> = bundle
            .header
            .class_names
            .iter()
            .zip(&probs)
            .map(|(c, p)| serde_json::json!({"class": c, "probability": p}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"predicted": bundle.header.class_names[best], "probabilities": classes})
        );
    } else {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]));
        for i in order {
            println!("{:.4}  {}", probs[i], bundle.header.class_names[i]);
        }
    }
    Ok(())
}
