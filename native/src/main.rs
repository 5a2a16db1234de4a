//! `rampart`: train, evaluate, attack, inspect and export robust classifiers. Each verb lives
//! in its own module under `cmd/`, which parses its flags into core specs and renders what
//! the core returns; the pipelines themselves are in `rampart-core`.

mod args;
mod cmd;
mod device;
mod image;
mod llm;
mod plot;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rampart_core::bundle::Bundle;
use rampart_core::data::{self, DatasetKind, ImageDataset, Split};

use crate::cmd::*;
use crate::device::DeviceChoice;

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "Robust classifiers: train, evaluate, attack, inspect, export"
)]
struct Cli {
    /// Compute device.
    #[arg(long, global = true, value_enum, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    /// Data directory (default: $RAMPART_DATA, else ../shared/data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a classifier and write a bundle plus JSON metrics.
    Train(train::TrainArgs),
    /// Clean and robust accuracy of a bundle.
    Eval(eval::EvalArgs),
    /// Attack one test image and write the adversarial image.
    Attack(attack::AttackArgs),
    /// Show what a bundle holds.
    Inspect(inspect::InspectArgs),
    /// Export a bundle's weights for the PyTorch twin of its network.
    Export(inspect::ExportArgs),
    /// Logits and class probabilities of one image.
    Predict(predict::PredictArgs),
    /// Write test images as JSON (for the demo page and browser tests).
    Samples(samples::SamplesArgs),
    /// Time adversarial-training steps (bench/at_step.sh compares them with PyTorch).
    BenchStep(bench_step::BenchStepArgs),
    /// Accident-report classification (ABEX-RAT): train, eval, predict.
    #[command(subcommand)]
    Text(text::TextCommand),
    /// ABEX augmentation: abstract minority-class reports and expand them into new ones.
    Augment(augment::AugmentArgs),
    /// Which semantic attributes break a model (SIA): histograms and single-attribute sweeps.
    Diagnose(diagnose::DiagnoseArgs),
}

fn main() {
    rampart_core::kernels::reuse_freed_memory();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let data_dir = data::resolve_data_dir(cli.data_dir.as_deref());
    match cli.command {
        Command::Train(a) => train::cmd_train(a, cli.device, &data_dir),
        Command::Eval(a) => eval::cmd_eval(a, cli.device, &data_dir),
        Command::Attack(a) => attack::cmd_attack(a, cli.device, &data_dir),
        Command::Inspect(a) => inspect::cmd_inspect(a),
        Command::Export(a) => inspect::cmd_export(a, cli.device),
        Command::Predict(a) => predict::cmd_predict(a, cli.device, &data_dir),
        Command::Samples(a) => samples::cmd_samples(a, &data_dir),
        Command::BenchStep(a) => bench_step::cmd_bench_step(a, cli.device, &data_dir),
        Command::Text(c) => text::run(c, cli.device, &data_dir),
        Command::Augment(a) => augment::run(a, &data_dir),
        Command::Diagnose(a) => diagnose::run(a, cli.device, &data_dir),
    }
}

pub(crate) fn load_split(
    dataset: &str,
    data_dir: &Path,
    split: Split,
) -> Result<(DatasetKind, ImageDataset)> {
    let kind = DatasetKind::parse(dataset)?;
    let set = data::load(kind, data_dir, split).with_context(|| {
        format!(
            "loading {} ({split:?}) from {}",
            kind.name(),
            data_dir.display()
        )
    })?;
    Ok((kind, set))
}

pub(crate) fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

pub(crate) fn load_bundle_and_test(
    bundle: &Path,
    data_dir: &Path,
) -> Result<(Bundle, ImageDataset)> {
    let b = Bundle::load(bundle).with_context(|| format!("loading bundle {}", bundle.display()))?;
    let (_, test) = load_split(&b.header.dataset, data_dir, Split::Test)?;
    if test.shape() != b.header.model.input_shape() {
        bail!(
            "the bundle's model takes {:?} images, the test set has {:?}",
            b.header.model.input_shape(),
            test.shape()
        );
    }
    Ok((b, test))
}
