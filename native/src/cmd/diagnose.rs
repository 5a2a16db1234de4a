//! `rampart diagnose`: which semantic attributes break a model (SIA). Writes the diagnosis as
//! JSON and SVG charts: mass and dominant-attribute histograms, and the single-attribute sweep.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use rampart_core::eval::diagnose::{DiagnoseAttack, DiagnoseSettings, Diagnosis, diagnose};

use crate::device::DeviceChoice;
use crate::{bar, load_bundle_and_test, plot};

#[derive(Args)]
pub struct DiagnoseArgs {
    /// Bundle file (from `rampart train`).
    #[arg(long)]
    bundle: PathBuf,
    /// Output folder: diagnosis.json, mass.svg, dominant.svg, sweep.svg.
    #[arg(long, default_value = "diagnosis")]
    out: PathBuf,
    /// Attributes (names, comma-separated; default: all that apply to the images).
    #[arg(long, value_delimiter = ',')]
    attributes: Vec<String>,
    /// Pixel budget (L∞) besides the attributes; 0: a purely semantic attack.
    #[arg(long, default_value_t = 0.0)]
    eps: f32,
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Attribute step per iteration as a fraction of its range.
    #[arg(long, default_value_t = 0.05)]
    attribute_step: f32,
    /// Attack loss: ce or cw.
    #[arg(long, default_value = "ce")]
    loss: String,
    /// Diagnose the first N test images.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Values per attribute in the single-attribute sweep (0: no sweep).
    #[arg(long, default_value_t = 11)]
    sweep_points: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the diagnosis as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: DiagnoseArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let (bundle, test) = load_bundle_and_test(&a.bundle, data_dir)?;
    let config = DiagnoseAttack {
        attributes: a.attributes.clone(),
        steps: a.steps,
        attribute_step: a.attribute_step,
        loss: a.loss.parse()?,
    }
    .sia_config(test.channels)?;
    let dev = device.init()?;
    let model = bundle.model(&dev)?;
    let pb = bar(0, "diagnose");
    if a.json {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let d = pollster::block_on(diagnose(
        &model,
        &test,
        &config,
        &DiagnoseSettings {
            eps: a.eps,
            limit: a.limit,
            batch_size: a.batch_size,
            sweep_points: a.sweep_points,
            seed: a.seed,
            keep_images: false,
        },
        &dev,
        &mut |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        },
    ))?;
    pb.finish_and_clear();
    write(&d, &a.out)?;
    if a.json {
        println!("{}", serde_json::to_string(&d)?);
    } else {
        println!(
            "{} images, {} correct, SIA (ε = {}, {} steps) succeeds on {:.1} %",
            d.samples,
            d.clean_correct,
            d.eps,
            d.steps,
            100.0 * d.success_rate
        );
        println!("{:>12} {:>7} {:>9}", "attribute", "mass", "dominant");
        for (i, at) in d.attributes.iter().enumerate() {
            println!(
                "{:>12} {:>6.1}% {:>9}",
                at.name(),
                100.0 * d.overall.mass[i],
                d.overall.dominant[i]
            );
        }
        println!(
            "wrote {}/diagnosis.json, mass.svg, dominant.svg, sweep.svg",
            a.out.display()
        );
    }
    Ok(())
}

fn write(d: &Diagnosis, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    rampart_core::write_atomically(
        &out.join("diagnosis.json"),
        serde_json::to_string_pretty(d)?.as_bytes(),
    )?;
    let names: Vec<String> = d.attributes.iter().map(|a| a.name().to_string()).collect();
    plot::bars(
        &out.join("mass.svg"),
        &format!(
            "Share of the attribute change in {} successful attacks",
            d.overall.attacks
        ),
        &names,
        &d.overall.mass,
        "share",
    )?;
    let dominant: Vec<f32> = d.overall.dominant.iter().map(|&c| c as f32).collect();
    plot::bars(
        &out.join("dominant.svg"),
        "Attribute that moved most (attacks)",
        &names,
        &dominant,
        "attacks",
    )?;
    if !d.sweeps.is_empty() {
        let series: Vec<(String, Vec<f32>, Vec<f32>)> = d
            .sweeps
            .iter()
            .map(|s| {
                (
                    s.attribute.name().to_string(),
                    s.values.clone(),
                    s.accuracy.clone(),
                )
            })
            .collect();
        plot::lines(
            &out.join("sweep.svg"),
            "Accuracy as one attribute sweeps its range",
            "position in the attribute's range (lo → hi)",
            &series,
        )?;
    }
    Ok(())
}
