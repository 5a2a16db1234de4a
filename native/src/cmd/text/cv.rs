//! `rampart text cv`: repeated stratified cross-validation of a recipe.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use rampart_core::text::cv::{CvData, CvFineTune, CvSpec, cross_validate};
use rampart_core::text::data::load_osha;

use super::{EncoderArgs, RecipeArgs, embed, open_encoder, token_states};
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
    #[arg(long, default_value_t = 3)]
    pub(super) repeats: usize,
    /// Print one JSON object (per-fold scores; mean ± sd and a 95 % interval of accuracy,
    /// macro- and weighted-F1 and per-class F1).
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
    if spec.config.fine_tune.is_some() && a.recipe.features != super::FeaturesArg::Embedding {
        anyhow::bail!("--fine-tune trains the encoder: it takes --features embedding");
    }
    spec.config.validate()?;
    let mut embedder = open_encoder(&a.encoder, data_dir, device)?;
    let x = embed(&mut embedder, &base.texts())?;
    let xa = match &augmented {
        Some(d) => embed(&mut embedder, &d.texts())?,
        None => Vec::new(),
    };
    // A fine-tuning recipe starts every fold from the frozen layers' token vectors.
    let (base_states, augmented_states) = match &spec.config.fine_tune {
        Some(t) => {
            let states = |texts: &[&str]| token_states(&embedder, texts, t.layers);
            let augmented_states = match &augmented {
                Some(d) => states(&d.texts())?,
                None => Vec::new(),
            };
            (states(&base.texts())?, augmented_states)
        }
        None => (Vec::new(), Vec::new()),
    };
    let data = CvData {
        base: &base,
        base_embeddings: &x,
        augmented: augmented.as_ref().map(|d| (d, &xa[..])),
        fine_tune: spec.config.fine_tune.as_ref().map(|_| CvFineTune {
            encoder: &embedder.encoder,
            base_states: &base_states,
            augmented_states: &augmented_states,
        }),
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
        let pct = |m: &rampart_core::text::cv::MeanSd| match m.ci95 {
            Some([lo, hi]) => format!(
                "{:.1} ± {:.1} (95 % CI {:.1}–{:.1})",
                100.0 * m.mean,
                100.0 * m.sd,
                100.0 * lo,
                100.0 * hi
            ),
            None => format!("{:.1} ± {:.1}", 100.0 * m.mean, 100.0 * m.sd),
        };
        for t in &report.logit_adjust {
            println!(
                "logit adjust τ = {}:  macro-F1 {}  accuracy {}  weighted-F1 {}",
                t.tau,
                pct(&t.macro_f1),
                pct(&t.accuracy),
                pct(&t.weighted_f1)
            );
            for c in &t.per_class {
                println!("    {:<50} F1 {}", c.class, pct(&c.f1));
            }
        }
    }
    Ok(())
}
