//! `rampart text cv`: repeated stratified cross-validation of a recipe.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use rampart_core::text::cv::{CvData, CvSpec, cross_validate};
use rampart_core::text::data::load_osha;

use super::{EncoderArgs, RecipeArgs, embed, open_encoder};
use crate::bar;
use crate::device::DeviceChoice;

#[derive(Args)]
pub struct TextCvArgs {
    #[command(flatten)]
    pub(super) encoder: EncoderArgs,
    #[command(flatten)]
    pub(super) recipe: RecipeArgs,
    #[arg(long, default_value_t = 5)]
    pub(super) folds: usize,
    #[arg(long, default_value_t = 2)]
    pub(super) repeats: usize,
    /// Print one JSON object (per-fold and mean ± sd of accuracy, macro- and weighted-F1).
    #[arg(long)]
    pub(super) json: bool,
}

pub fn cmd_cv(a: TextCvArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let osha = data_dir.join("osha");
    let base = load_osha(&osha.join("train.json"))?.concat(&load_osha(&osha.join("val.json"))?)?;
    let augmented = a.recipe.augmentation(&osha, &base.class_names)?;
    let spec = CvSpec {
        folds: a.folds,
        repeats: a.repeats,
        features: a.recipe.features.into(),
        logit_adjust: a.recipe.logit_adjust.clone(),
        config: a.recipe.config()?,
        augment: a.recipe.augment_name(),
    };
    let mut embedder = open_encoder(&a.encoder, data_dir, device)?;
    let x = embed(&mut embedder, &base.texts())?;
    let xa = match &augmented {
        Some(d) => embed(&mut embedder, &d.texts())?,
        None => Vec::new(),
    };
    let data = CvData {
        base: &base,
        base_embeddings: &x,
        augmented: augmented.as_ref().map(|d| (d, &xa[..])),
    };
    let pb = bar((a.folds * a.repeats) as u64, "cv");
    let report = pollster::block_on(cross_validate(
        &data,
        &spec,
        &embedder.device,
        &mut |d, _| pb.set_position(d as u64),
    ))?;
    pb.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for t in &report.logit_adjust {
            println!(
                "logit adjust τ = {}:  accuracy {:.4} ± {:.4}  macro_f1 {:.4} ± {:.4}  weighted_f1 {:.4} ± {:.4}",
                t.tau,
                t.accuracy.mean,
                t.accuracy.sd,
                t.macro_f1.mean,
                t.macro_f1.sd,
                t.weighted_f1.mean,
                t.weighted_f1.sd
            );
        }
    }
    Ok(())
}
