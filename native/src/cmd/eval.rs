//! `rampart eval`: clean and robust accuracy of a bundle, per attack and ε, or under an
//! attack suite with its sanity checks and leaderboard row.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use rampart_core::attack::AttackSpec;
use rampart_core::bundle::Bundle;
use rampart_core::data::ImageDataset;
use rampart_core::eval::report::{Leaderboard, ModelCard, SuiteRun};
use rampart_core::eval::{EvalReport, evaluate};

use crate::args::AttackOpts;
use crate::device::DeviceChoice;
use crate::{bar, load_bundle_and_test};

#[derive(Args)]
pub struct EvalArgs {
    /// Bundle file (from `rampart train`).
    #[arg(long)]
    bundle: PathBuf,
    /// Budgets to evaluate, e.g. 0.1,0.2,0.3.
    #[arg(long, value_delimiter = ',', default_value = "0.3")]
    eps: Vec<f32>,
    #[command(flatten)]
    attack: AttackOpts,
    /// Evaluate on the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 250)]
    batch_size: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run an attack suite (worst case per sample, AutoAttack's protocol) with sanity checks
    /// instead of --attack: quick (APGD-CE, Square), autoattack (APGD-CE, APGD-T, Square) or
    /// adaptive (autoattack + MI-FGSM + PGD-100×5 on the CW margin). Takes one --eps.
    #[arg(long, value_parser = ["quick", "autoattack", "adaptive"])]
    suite: Option<String>,
    /// APGD iterations of the suite (default: 20 quick, 100 otherwise).
    #[arg(long)]
    apgd_steps: Option<usize>,
    /// Square queries of the suite (default: 500 quick, 5000 otherwise).
    #[arg(long)]
    square_queries: Option<usize>,
    /// Skip the suite's sanity checks.
    #[arg(long)]
    no_sanity: bool,
    /// Write the suite's leaderboard row as a markdown table here.
    #[arg(long)]
    table: Option<PathBuf>,
}

pub fn cmd_eval(a: EvalArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let (bundle, test) = load_bundle_and_test(&a.bundle, data_dir)?;
    let test = match a.limit {
        Some(n) => test.take(n),
        None => test,
    };
    if let Some(suite) = &a.suite {
        return cmd_eval_suite(&a, suite, &bundle, &test, device);
    }
    let attacks = a
        .attack
        .specs(false)?
        .iter()
        .map(AttackSpec::build)
        .collect::<rampart_core::Result<Vec<_>>>()?;
    let dev = device.init()?;
    let model = bundle.model(&dev)?;
    let total = test.len().div_ceil(a.batch_size) * (1 + attacks.len() * a.eps.len());
    let pb = bar(total as u64, "eval");
    if a.json {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report: EvalReport = pollster::block_on(evaluate(
        &model,
        &test,
        &attacks,
        &a.eps,
        a.batch_size,
        &dev,
        a.attack.seed,
        &mut |d, _| pb.set_position(d as u64),
    ))?;
    pb.finish_and_clear();
    let json = serde_json::to_string(&report)?;
    if let Some(out) = &a.out {
        rampart_core::write_atomically(out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    if a.json {
        println!("{json}");
    } else {
        println!("samples         {}", report.samples);
        println!("clean accuracy  {:.4}", report.clean_accuracy);
        println!(
            "{:<10} {:>6} {:>6} {:>9} {:>9}",
            "attack", "eps", "steps", "restarts", "accuracy"
        );
        for r in &report.robust {
            println!(
                "{:<10} {:>6} {:>6} {:>9} {:>9.4}",
                r.attack, r.eps, r.steps, r.restarts, r.accuracy
            );
        }
    }
    Ok(())
}

pub fn cmd_eval_suite(
    a: &EvalArgs,
    suite: &str,
    bundle: &Bundle,
    test: &ImageDataset,
    device: DeviceChoice,
) -> Result<()> {
    use rampart_core::eval::suite::{Suite, SuiteConfig, run_suite};
    let [eps] = a.eps[..] else {
        bail!("--suite takes exactly one --eps, got {}", a.eps.len());
    };
    let suite = Suite::parse(suite)?;
    let defaults = SuiteConfig::new(suite, eps);
    let config = SuiteConfig {
        apgd_steps: a.apgd_steps.unwrap_or(defaults.apgd_steps),
        square_queries: a.square_queries.unwrap_or(defaults.square_queries),
        sanity: !a.no_sanity,
        batch_size: a.batch_size,
        seed: a.attack.seed,
        ..defaults
    };
    config.validate()?;
    let dev = device.init()?;
    let model = bundle.model(&dev)?;
    let pb = bar(1, "suite");
    if a.json {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let report = pollster::block_on(run_suite(&model, test, &config, &dev, &mut |d, t| {
        pb.set_length(t as u64);
        pb.set_position(d as u64);
    }))?;
    pb.finish_and_clear();
    let header = &bundle.header;
    let card = ModelCard {
        name: a
            .bundle
            .file_stem()
            .map(|s| s.to_string_lossy().to_string()),
        dataset: &header.dataset,
        architecture: header.model.arch_label(),
        training_method: header.training_method(),
    };
    let leaderboard = Leaderboard::new(&card, &report);
    let table = leaderboard.markdown(&report);
    let flags = report
        .sanity
        .as_ref()
        .map(|s| s.flags.clone())
        .unwrap_or_default();
    let json = SuiteRun {
        report,
        leaderboard,
        seconds: started.elapsed().as_secs_f64(),
    };
    let report = &json.report;
    if let Some(out) = &a.out {
        rampart_core::write_atomically(out, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    if let Some(path) = &a.table {
        rampart_core::write_atomically(path, table.as_bytes())?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&json)?);
        for f in &flags {
            eprintln!("sanity: {f}");
        }
        return Ok(());
    }
    println!(
        "suite {} at L∞ ε = {eps} on {} samples ({:.0} s)",
        suite.name(),
        report.samples,
        started.elapsed().as_secs_f64()
    );
    println!("clean accuracy   {:.4}", report.clean_accuracy);
    for s in &report.stages {
        println!(
            "after {:<10} {:.4}  ({} broken)",
            s.attack, s.robust_accuracy, s.broke
        );
    }
    println!("robust accuracy  {:.4}", report.robust_accuracy);
    for s in &report.skipped {
        println!("skipped: {s}");
    }
    if let Some(s) = &report.sanity {
        let curve: Vec<String> = s
            .eps_curve
            .iter()
            .map(|(e, acc)| format!("{e}: {acc:.3}"))
            .collect();
        println!("sanity: PGD-20 accuracy by ε  {}", curve.join(", "));
        println!(
            "sanity: PGD-10 {:.4}, PGD-50×3 {:.4}, black-box only {}, zero gradients {:.1} %",
            s.pgd10_accuracy,
            s.pgd50x3_accuracy,
            s.black_box_only,
            100.0 * s.zero_gradient_fraction
        );
        if s.flags.is_empty() {
            println!("sanity: all checks passed");
        }
        for f in &s.flags {
            println!("sanity FLAG: {f}");
        }
    }
    print!("{table}");
    Ok(())
}
