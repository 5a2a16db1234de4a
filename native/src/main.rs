//! `rampart`: train, evaluate, attack, inspect and export robust classifiers.

mod augment;
mod device;
mod diagnose;
mod image;
mod llm;
mod plot;
mod text;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rampart_core::attack::pgd::StepSize;
use rampart_core::attack::{Attack, AttackLoss, Norm, PgdConfig};
use rampart_core::bundle::{Bundle, BundleHeader};
use rampart_core::data::{self, DatasetKind, ImageDataset, Split};
use rampart_core::eval::{EvalReport, evaluate};
use rampart_core::model::{CnnConfig, ModelConfig, ResNetConfig};
use rampart_core::train::{
    Ancra, Balance, CheckpointOptions, Method, OptimizerKind, TrainConfig, TrainEvent, train,
};

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
    Train(TrainArgs),
    /// Clean and robust accuracy of a bundle.
    Eval(EvalArgs),
    /// Attack one test image and write the adversarial image.
    Attack(AttackArgs),
    /// Show what a bundle holds.
    Inspect(InspectArgs),
    /// Export a bundle's weights for the PyTorch twin of its network.
    Export(ExportArgs),
    /// Logits and class probabilities of one image.
    Predict(PredictArgs),
    /// Write test images as JSON (for the demo page and browser tests).
    Samples(SamplesArgs),
    /// Time adversarial-training steps (bench/at_step.sh compares them with PyTorch).
    BenchStep(BenchStepArgs),
    /// Accident-report classification (ABEX-RAT): train, eval, predict.
    #[command(subcommand)]
    Text(text::TextCommand),
    /// ABEX augmentation: abstract minority-class reports and expand them into new ones.
    Augment(augment::AugmentArgs),
    /// Which semantic attributes break a model (SIA): histograms and single-attribute sweeps.
    Diagnose(diagnose::DiagnoseArgs),
}

#[derive(Args)]
struct BenchStepArgs {
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// PGD steps per training step (0: standard training).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[command(flatten)]
    arch: ArchArgs,
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

/// The network: its style and widths.
#[derive(Args)]
struct ArchArgs {
    /// madry: conv5×5, pool, conv5×5, pool, fc, fc (Madry et al.; widths 32,64 and 1024);
    /// strided: conv4×4/2, conv4×4/2, fc, fc (Wong et al.'s fast-AT net; 16,32 and 100).
    #[arg(long, value_enum, default_value_t = ArchArg::Madry)]
    arch: ArchArg,
    /// Convolution widths, e.g. 32,64 (default: the architecture's).
    #[arg(long, value_delimiter = ',')]
    conv: Option<Vec<usize>>,
    /// Width of the hidden fully connected layer (default: the architecture's).
    #[arg(long)]
    hidden: Option<usize>,
    /// Channels of PreAct ResNet-18's first stage (64 in the standard network).
    #[arg(long, default_value_t = 64)]
    resnet_width: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum ArchArg {
    Madry,
    Strided,
    /// PreAct ResNet-18, CIFAR layout (per-channel normalisation with CIFAR-10's statistics
    /// for colour images).
    PreactResnet18,
}

impl ArchArgs {
    fn config(&self, [c, h, w]: [usize; 3], classes: usize) -> Result<ModelConfig> {
        let base = match self.arch {
            ArchArg::Madry => CnnConfig::madry(c, h, w, classes),
            ArchArg::Strided => CnnConfig::strided(c, h, w, classes),
            ArchArg::PreactResnet18 => {
                if self.conv.is_some() || self.hidden.is_some() {
                    bail!(
                        "--conv and --hidden size the CNNs; PreAct ResNet-18 takes --resnet-width"
                    );
                }
                let cifar = ResNetConfig::cifar(classes);
                let config = ModelConfig::PreactResnet18(ResNetConfig {
                    in_channels: c,
                    height: h,
                    width: w,
                    base_width: self.resnet_width,
                    normalization: if c == 3 {
                        cifar.normalization.clone()
                    } else {
                        rampart_core::model::Normalization::identity(c)
                    },
                    ..cifar
                });
                config.validate()?;
                return Ok(config);
            }
        };
        let conv = match self.conv.as_deref() {
            None => base.conv_channels,
            Some(&[c1, c2]) => [c1, c2],
            Some(_) => bail!("--conv takes two widths, e.g. 32,64"),
        };
        let hidden = self.hidden.unwrap_or(base.hidden);
        let config = ModelConfig::Cnn(base.with_widths(conv, hidden));
        config.validate()?;
        Ok(config)
    }
}

#[derive(Args)]
struct PredictArgs {
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

#[derive(Args)]
struct SamplesArgs {
    #[arg(long, default_value = "mnist")]
    dataset: String,
    #[arg(long, default_value_t = 32)]
    count: usize,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodArg {
    Standard,
    PgdAt,
    FgsmRs,
    SiaAt,
    Trades,
    Mart,
}

#[derive(Clone, Copy, ValueEnum)]
enum BalanceArg {
    None,
    Oversample,
    Weighted,
    Focal,
    Jitter,
    Sia,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimArg {
    Adam,
    Sgd,
}

#[derive(Args)]
struct TrainArgs {
    #[arg(long, default_value = "mnist")]
    dataset: String,
    #[arg(long, value_enum, default_value_t = MethodArg::Standard)]
    method: MethodArg,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[arg(long, value_enum, default_value_t = OptimArg::Adam)]
    optimizer: OptimArg,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Epochs after which the learning rate drops ×lr-gamma, e.g. 5,8.
    #[arg(long, value_delimiter = ',')]
    milestones: Vec<usize>,
    #[arg(long, default_value_t = 0.1)]
    lr_gamma: f64,
    /// Training ε (L∞) for pgd-at and fgsm-rs.
    #[arg(long, default_value_t = 0.3)]
    eps: f32,
    /// PGD steps for pgd-at.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// PGD step size for pgd-at (default 2.5·ε/steps).
    #[arg(long)]
    step_size: Option<f32>,
    /// FGSM step for fgsm-rs (default 1.25·ε).
    #[arg(long)]
    alpha: Option<f32>,
    /// β of trades and mart (weight of the robust term).
    #[arg(long, default_value_t = 6.0)]
    beta: f32,
    /// ANCRA (arXiv 2310.03358) on top of the method: reverse attention (the model gains an RA
    /// block) and the asymmetric negative contrast.
    #[arg(long)]
    ancra: bool,
    /// Keep only one part of ANCRA, for the ablation.
    #[arg(long, value_parser = ["ra", "anc"], requires = "ancra")]
    ancra_only: Option<String>,
    /// ζ, ANCRA's weight of the negative contrast.
    #[arg(long, default_value_t = 3.0)]
    zeta: f32,
    /// Attribute step of sia-at (and of --balance sia), as a fraction of each range.
    #[arg(long, default_value_t = 0.1)]
    attribute_step: f32,
    /// Attribute bounds of sia-at as a fraction of each range.
    #[arg(long, default_value_t = 1.0)]
    sia_scale: f32,
    /// Counter-measure against class imbalance: class-balanced sampling (oversample), inverse-
    /// frequency weighted CE, focal loss, or oversampling whose repeats are transformed by
    /// random attribute jitter or by SIA against the current model.
    #[arg(long, value_enum, default_value_t = BalanceArg::None)]
    balance: BalanceArg,
    /// γ of --balance focal.
    #[arg(long, default_value_t = 2.0)]
    focal_gamma: f32,
    /// Attribute bounds of --balance jitter|sia as a fraction of each range.
    #[arg(long, default_value_t = 0.5)]
    balance_scale: f32,
    /// SIA steps of --balance sia.
    #[arg(long, default_value_t = 5)]
    balance_steps: usize,
    /// Train on a long-tailed subset of the training split: exponential profile, class 0 the
    /// head, imbalance ratio n_max / n_min = this value. The validation slice is held out
    /// first and stays balanced; both draws use --long-tail-seed, so runs with different
    /// --seed values share one long-tailed set.
    #[arg(long)]
    long_tail: Option<f32>,
    #[arg(long, default_value_t = 0)]
    long_tail_seed: u64,
    /// Grow ε linearly from 0 over this many epochs.
    #[arg(long, default_value_t = 0.0)]
    eps_ramp: f32,
    /// After each epoch, PGD with this many steps at the training ε on the validation slice
    /// (0: clean validation only).
    #[arg(long, default_value_t = 0)]
    val_pgd_steps: usize,
    /// Validation images the validation PGD attacks.
    #[arg(long, default_value_t = 1000)]
    val_pgd_samples: usize,
    /// Keep the epoch with the best validation accuracy (robust when --val-pgd-steps > 0)
    /// rather than the last.
    #[arg(long)]
    keep_best: bool,
    /// With --keep-best: stop once this many epochs in a row have not beaten the best
    /// validation score.
    #[arg(long, requires = "keep_best")]
    patience: Option<usize>,
    #[command(flatten)]
    arch: ArchArgs,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    limit: Option<usize>,
    /// Hold out this many training images for validation.
    #[arg(long, default_value_t = 5000)]
    val_size: usize,
    /// Where to write the bundle.
    #[arg(long, default_value = "model.rampart")]
    out: PathBuf,
    /// Where to write the JSON metrics (default: bundle path with .json).
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Checkpoint file (default: bundle path with .ckpt).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 50)]
    checkpoint_every: usize,
    /// Continue from the checkpoint if there is one.
    #[arg(long)]
    resume: bool,
    /// Evaluate on this many test images at the end (0: skip).
    #[arg(long, default_value_t = 10000)]
    test_size: usize,
    /// Stop after this many steps, leaving the checkpoint (for testing resumption).
    #[arg(long, hide = true)]
    stop_after_steps: Option<usize>,
    /// Print the final metrics as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum AttackArg {
    Fgsm,
    Pgd,
    PgdL2,
    FgsmL2,
    /// APGD with the cross-entropy (--steps iterations, --restarts runs).
    ApgdCe,
    /// APGD-T: targeted DLR towards up to 9 most likely other classes (≥ 4 classes).
    ApgdT,
    /// Square, score-based black box (--steps queries).
    Square,
    MiFgsm,
}

#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    Ce,
    Cw,
}

/// Attack settings shared by `eval` and `attack`.
#[derive(Args)]
struct AttackOpts {
    /// Attacks to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "pgd")]
    attack: Vec<AttackArg>,
    /// Iterations of PGD.
    #[arg(long, default_value_t = 40)]
    steps: usize,
    /// Absolute PGD step size (default 2.5·ε/steps).
    #[arg(long)]
    step_size: Option<f32>,
    #[arg(long, default_value_t = 1)]
    restarts: usize,
    #[arg(long, value_enum, default_value_t = LossArg::Ce)]
    loss: LossArg,
    /// Start PGD at the clean input instead of a random point of the ball.
    #[arg(long)]
    no_random_start: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct EvalArgs {
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

#[derive(Args)]
struct AttackArgs {
    /// Bundle file (from `rampart train`).
    #[arg(long)]
    bundle: PathBuf,
    /// Index of the test image.
    #[arg(long, default_value_t = 0)]
    index: usize,
    #[arg(long, default_value_t = 0.3)]
    eps: f32,
    /// Target class for a targeted attack.
    #[arg(long)]
    target: Option<usize>,
    #[command(flatten)]
    attack: AttackOpts,
    /// Where to write the adversarial image (PNG); a sibling `-delta.png` shows the
    /// magnified perturbation and `-clean.png` the input.
    #[arg(long, default_value = "adv.png")]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InspectArgs {
    /// Bundle file.
    bundle: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Safetensors,
}

#[derive(Args)]
struct ExportArgs {
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long, value_enum, default_value_t = ExportFormat::Safetensors)]
    format: ExportFormat,
    #[arg(long)]
    out: PathBuf,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let data_dir = data::resolve_data_dir(cli.data_dir.as_deref());
    match cli.command {
        Command::Train(a) => cmd_train(a, cli.device, &data_dir),
        Command::Eval(a) => cmd_eval(a, cli.device, &data_dir),
        Command::Attack(a) => cmd_attack(a, cli.device, &data_dir),
        Command::Inspect(a) => cmd_inspect(a),
        Command::Export(a) => cmd_export(a, cli.device),
        Command::Predict(a) => cmd_predict(a, cli.device, &data_dir),
        Command::Samples(a) => cmd_samples(a, &data_dir),
        Command::BenchStep(a) => cmd_bench_step(a, cli.device, &data_dir),
        Command::Text(c) => text::run(c, cli.device, &data_dir),
        Command::Augment(a) => augment::run(a, &data_dir),
        Command::Diagnose(a) => diagnose::run(a, cli.device, &data_dir),
    }
}

fn load_split(dataset: &str, data_dir: &Path, split: Split) -> Result<(DatasetKind, ImageDataset)> {
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

fn bar(len: u64, what: &str) -> ProgressBar {
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

fn cmd_train(a: TrainArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let (kind, full) = load_split(&a.dataset, data_dir, Split::Train)?;
    let full = match a.limit {
        Some(n) => full.take(n),
        None => full,
    };
    if a.val_size >= full.len() {
        bail!(
            "--val-size {} leaves no training data ({} images)",
            a.val_size,
            full.len()
        );
    }
    let split_seed = match a.long_tail {
        Some(_) => a.long_tail_seed,
        None => a.seed,
    };
    let (train_set, val_set) = full.split_off(a.val_size, split_seed ^ 0x5eed);
    let train_set = match a.long_tail {
        Some(ratio) => train_set.long_tailed(ratio, a.long_tail_seed ^ 0x7a11)?,
        None => train_set,
    };
    let method = match a.method {
        MethodArg::Standard => Method::Standard,
        MethodArg::PgdAt => Method::PgdAt {
            eps: a.eps,
            steps: a.steps,
            step_size: a.step_size.unwrap_or(2.5 * a.eps / a.steps.max(1) as f32),
        },
        MethodArg::FgsmRs => Method::FgsmRs {
            eps: a.eps,
            alpha: a.alpha.unwrap_or(1.25 * a.eps),
        },
        MethodArg::Trades => Method::Trades {
            eps: a.eps,
            steps: a.steps,
            step_size: a.step_size.unwrap_or(2.5 * a.eps / a.steps.max(1) as f32),
            beta: a.beta,
        },
        MethodArg::Mart => Method::Mart {
            eps: a.eps,
            steps: a.steps,
            step_size: a.step_size.unwrap_or(2.5 * a.eps / a.steps.max(1) as f32),
            beta: a.beta,
        },
        MethodArg::SiaAt => Method::SiaAt {
            eps: a.eps,
            steps: a.steps,
            attribute_step: a.attribute_step,
            scale: a.sia_scale,
        },
    };
    let balance = match a.balance {
        BalanceArg::None => Balance::None,
        BalanceArg::Oversample => Balance::Oversample,
        BalanceArg::Weighted => Balance::Weighted,
        BalanceArg::Focal => Balance::Focal {
            gamma: a.focal_gamma,
        },
        BalanceArg::Jitter => Balance::Jitter {
            scale: a.balance_scale,
        },
        BalanceArg::Sia => Balance::Sia {
            steps: a.balance_steps,
            attribute_step: a.attribute_step,
            scale: a.balance_scale,
        },
    };
    let config = TrainConfig {
        method,
        optimizer: match a.optimizer {
            OptimArg::Adam => OptimizerKind::Adam,
            OptimArg::Sgd => OptimizerKind::Sgd,
        },
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        milestones: a.milestones.clone(),
        lr_gamma: a.lr_gamma,
        epochs: a.epochs,
        batch_size: a.batch_size,
        eps_ramp_epochs: a.eps_ramp,
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
        val_pgd_steps: a.val_pgd_steps,
        val_pgd_samples: a.val_pgd_samples,
        keep_best: a.keep_best,
        patience: a.patience,
        balance,
        ancra: a.ancra.then(|| Ancra {
            ra: a.ancra_only.as_deref() != Some("anc"),
            anc: a.ancra_only.as_deref() != Some("ra"),
            zeta: a.zeta,
            ..Ancra::official()
        }),
    };
    let mut model_config = a.arch.config(train_set.shape(), train_set.num_classes())?;
    if config.ancra.as_ref().is_some_and(|x| x.ra) {
        model_config.set_reverse_attention(true);
    }
    let dev = device.init()?;
    let checkpoint = CheckpointOptions {
        path: a
            .checkpoint
            .clone()
            .unwrap_or_else(|| a.out.with_extension("ckpt")),
        resume: a.resume,
        stop_after_steps: a.stop_after_steps,
    };
    if !a.resume && checkpoint.path.exists() {
        std::fs::remove_file(&checkpoint.path).ok();
    }
    let mut pb: Option<ProgressBar> = None;
    let quiet = a.json;
    let trained = train(
        &model_config,
        &config,
        &train_set,
        Some(&val_set),
        &dev,
        Some(&checkpoint),
        &mut |e| match e {
            TrainEvent::Start {
                epochs,
                steps_per_epoch,
                resumed_at,
            } => {
                if resumed_at != (0, 0) && !quiet {
                    eprintln!(
                        "resuming at epoch {} step {}",
                        resumed_at.0 + 1,
                        resumed_at.1
                    );
                }
                let p = bar((epochs * steps_per_epoch) as u64, "train");
                p.set_position((resumed_at.0 * steps_per_epoch + resumed_at.1) as u64);
                pb = Some(p);
            }
            TrainEvent::Step { loss, .. } => {
                if let Some(p) = &pb {
                    p.inc(1);
                    p.set_message(format!("loss {loss:.3}"));
                }
            }
            TrainEvent::Epoch(m) => {
                if let Some(p) = &pb {
                    p.suspend(|| eprintln!(
                        "epoch {:>3}  lr {:.1e}  loss {:.4}  train acc {:.4}  val acc {}{}  {:.0}s",
                        m.epoch + 1,
                        m.lr,
                        m.train_loss,
                        m.train_accuracy,
                        m.val_accuracy.map_or("-".into(), |v| format!("{v:.4}")),
                        m.val_robust_accuracy.map_or(String::new(), |v| format!("  val pgd {v:.4}")),
                        m.seconds
                    ));
                }
            }
            TrainEvent::Checkpoint { .. } => {}
            TrainEvent::Stopped { best_epoch } => {
                if let Some(p) = &pb {
                    p.suspend(|| {
                        eprintln!(
                            "stopping: no epoch has beaten epoch {}'s validation score for {} epochs",
                            best_epoch + 1,
                            config.patience.unwrap_or_default()
                        )
                    });
                }
            }
        },
    )?;
    if let Some(p) = &pb {
        p.finish_and_clear();
    }
    if !trained.completed {
        eprintln!("stopped early; checkpoint at {}", checkpoint.path.display());
        return Ok(());
    }
    // Final test evaluation: clean accuracy and PGD at the training ε.
    let mut metrics = serde_json::json!({
        "dataset": kind.name(),
        "method": config.method.name(),
        "balance": config.balance.name(),
        "train_class_counts": train_set.class_counts(),
        "history": trained.history,
        // 1-based, like the progress lines.
        "kept_epoch": trained.epoch.map(|e| e + 1),
        "train_seconds": trained.history.iter().map(|m| m.seconds).sum::<f64>(),
    });
    if a.test_size > 0 {
        let (_, test) = load_split(&a.dataset, data_dir, Split::Test)?;
        let test = test.take(a.test_size);
        let p = bar(test.len().div_ceil(500) as u64, "test");
        let report = pollster::block_on(evaluate(
            &trained.model,
            &test,
            &[],
            &[],
            500,
            &dev.without_autodiff(),
            0,
            &mut |d, _| p.set_position(d as u64),
        ))?;
        p.finish_and_clear();
        metrics["test_clean_accuracy"] = report.clean_accuracy.into();
        metrics["test_samples"] = report.samples.into();
        // Recall per class and its mean (balanced accuracy), for imbalanced training sets.
        let recall: Vec<f64> = report
            .confusion
            .iter()
            .enumerate()
            .map(|(c, row)| row[c] as f64 / row.iter().sum::<usize>().max(1) as f64)
            .collect();
        metrics["test_balanced_accuracy"] =
            (recall.iter().sum::<f64>() / recall.len().max(1) as f64).into();
        metrics["test_per_class_recall"] = recall.into();
    }
    let header = BundleHeader {
        model: model_config,
        class_names: train_set.class_names.clone(),
        dataset: kind.name().into(),
        recipe: serde_json::to_value(&config)?,
        metrics: metrics.clone(),
        created_by: format!("rampart {}", env!("CARGO_PKG_VERSION")),
    };
    Bundle::new(&trained.model, header)?.save(&a.out)?;
    let metrics_path = a.metrics.unwrap_or_else(|| a.out.with_extension("json"));
    rampart_core::write_atomically(
        &metrics_path,
        serde_json::to_string_pretty(&metrics)?.as_bytes(),
    )?;
    std::fs::remove_file(&checkpoint.path).ok();
    if a.json {
        println!("{}", serde_json::to_string(&metrics)?);
    } else {
        println!("wrote {} and {}", a.out.display(), metrics_path.display());
        if let Some(acc) = metrics.get("test_clean_accuracy") {
            println!("test clean accuracy: {acc}");
        }
    }
    Ok(())
}

fn build_attacks(o: &AttackOpts, targeted: bool) -> Result<Vec<Box<dyn Attack>>> {
    use rampart_core::attack::apgd::ApgdConfig;
    use rampart_core::attack::mifgsm::MiFgsmConfig;
    use rampart_core::attack::square::SquareConfig;
    o.attack
        .iter()
        .map(|kind| -> Result<Box<dyn Attack>> {
            let mut c = match kind {
                AttackArg::Fgsm => PgdConfig::fgsm(Norm::Linf),
                AttackArg::FgsmL2 => PgdConfig::fgsm(Norm::L2),
                AttackArg::Pgd => PgdConfig::new(Norm::Linf, o.steps),
                AttackArg::PgdL2 => PgdConfig::new(Norm::L2, o.steps),
                other => {
                    if targeted {
                        bail!("--target works with fgsm, pgd and their L2 versions only");
                    }
                    return Ok(match other {
                        AttackArg::ApgdCe => Box::new(
                            ApgdConfig {
                                restarts: o.restarts,
                                ..ApgdConfig::ce(o.steps)
                            }
                            .init()?,
                        ),
                        AttackArg::ApgdT => Box::new(
                            ApgdConfig {
                                restarts: o.restarts,
                                ..ApgdConfig::targeted(o.steps, 9)
                            }
                            .init()?,
                        ),
                        AttackArg::Square => Box::new(SquareConfig::new(o.steps).init()?),
                        _ => Box::new(MiFgsmConfig::new(o.steps).init()?),
                    });
                }
            };
            if matches!(kind, AttackArg::Pgd | AttackArg::PgdL2) {
                if let Some(s) = o.step_size {
                    c.step_size = StepSize::Absolute(s);
                }
                c.random_start = !o.no_random_start;
                c.restarts = o.restarts;
            }
            c.loss = match o.loss {
                LossArg::Ce => AttackLoss::CrossEntropy,
                LossArg::Cw => AttackLoss::CwMargin,
            };
            c.targeted = targeted;
            Ok(Box::new(c.init()?))
        })
        .collect()
}

fn load_bundle_and_test(bundle: &Path, data_dir: &Path) -> Result<(Bundle, ImageDataset)> {
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

fn cmd_eval(a: EvalArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let (bundle, test) = load_bundle_and_test(&a.bundle, data_dir)?;
    let test = match a.limit {
        Some(n) => test.take(n),
        None => test,
    };
    if let Some(suite) = &a.suite {
        return cmd_eval_suite(&a, suite, &bundle, &test, device);
    }
    let attacks = build_attacks(&a.attack, false)?;
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

fn cmd_eval_suite(
    a: &EvalArgs,
    suite: &str,
    bundle: &Bundle,
    test: &ImageDataset,
    device: DeviceChoice,
) -> Result<()> {
    use rampart_core::attack::suite::{Suite, SuiteConfig, run_suite};
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
    let method = header
        .recipe
        .get("method")
        .and_then(|m| m.get("name"))
        .and_then(|m| m.as_str())
        .unwrap_or("unknown")
        .to_string();
    let flags = report
        .sanity
        .as_ref()
        .map(|s| s.flags.clone())
        .unwrap_or_default();
    // RobustBench's model-card fields, percentages as numbers.
    let leaderboard = serde_json::json!({
        "name": a.bundle.file_stem().map(|s| s.to_string_lossy().to_string()),
        "dataset": header.dataset,
        "threat_model": "Linf",
        "eps": eps,
        "architecture": header.model.arch_label(),
        "training_method": method,
        "additional_data": false,
        "clean_acc": (10000.0 * report.clean_accuracy).round() / 100.0,
        "autoattack_acc": (10000.0 * report.robust_accuracy).round() / 100.0,
        "evaluation": format!("rampart eval --suite {}", suite.name()),
        "unreliable": !flags.is_empty(),
        "samples": report.samples,
    });
    let table = format!(
        "| Model | Dataset | Threat model | Clean accuracy | Robust accuracy ({suite}) | \
         Evaluation potentially unreliable | Architecture | Training |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {name} | {dataset} | L∞ ε = {eps} | {clean:.2} % | {robust:.2} % | {unreliable} | \
         {arch} | {method} |\n",
        suite = suite.name(),
        name = leaderboard["name"].as_str().unwrap_or("model"),
        dataset = header.dataset,
        clean = 100.0 * report.clean_accuracy,
        robust = 100.0 * report.robust_accuracy,
        unreliable = if flags.is_empty() {
            "no"
        } else {
            "YES (see flags)"
        },
        arch = header.model.arch_label(),
    );
    let json = serde_json::json!({
        "report": report,
        "leaderboard": leaderboard,
        "seconds": started.elapsed().as_secs_f64(),
    });
    if let Some(out) = &a.out {
        rampart_core::write_atomically(out, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    if let Some(path) = &a.table {
        rampart_core::write_atomically(path, table.as_bytes())?;
    }
    if a.json {
        println!("{json}");
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

fn cmd_attack(a: AttackArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let (bundle, test) = load_bundle_and_test(&a.bundle, data_dir)?;
    if a.index >= test.len() {
        bail!(
            "--index {} is out of range: the test set has {} images",
            a.index,
            test.len()
        );
    }
    if a.attack.attack.len() != 1 {
        bail!("attack takes exactly one --attack");
    }
    let k = bundle.header.model.num_classes();
    if let Some(t) = a.target
        && t >= k
    {
        bail!("--target {t} is out of range: the model has {k} classes");
    }
    let attack = build_attacks(&a.attack, a.target.is_some())?.remove(0);
    let dev = device.init()?;
    let model = bundle.model(&dev)?;
    let (x, y) = test.batch(&[a.index], &dev);
    let labels = match a.target {
        Some(t) => burn::tensor::Tensor::from_data(
            burn::tensor::TensorData::new(vec![t as i64], [1]),
            &dev,
        ),
        None => y,
    };
    let out = attack.run(&model, x.clone(), labels, &[a.eps], a.attack.seed)?;
    let probs = |t| {
        burn::tensor::activation::softmax(model.valid().forward(t), 1)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 probabilities")
    };
    let before = probs(x.clone());
    let after = probs(out.adversarial.clone());
    use rampart_core::argmax;
    let clean: Vec<f32> = x.into_data().try_to_vec::<f32>().expect("f32");
    let adv: Vec<f32> = out
        .adversarial
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32");
    let shape = test.shape();
    image::write_png(&a.out, &adv, shape)?;
    let stem = a.out.with_extension("");
    image::write_png(
        &PathBuf::from(format!("{}-clean.png", stem.display())),
        &clean,
        shape,
    )?;
    image::write_delta_png(
        &PathBuf::from(format!("{}-delta.png", stem.display())),
        &clean,
        &adv,
        shape,
    )?;
    let linf = clean
        .iter()
        .zip(&adv)
        .map(|(c, a)| (a - c).abs())
        .fold(0f32, f32::max);
    let names = &bundle.header.class_names;
    let result = serde_json::json!({
        "index": a.index,
        "label": test.labels[a.index],
        "attack": attack.name(),
        "eps": a.eps,
        "target": a.target,
        "before": { "class": argmax(&before), "name": names[argmax(&before)], "probabilities": before },
        "after": { "class": argmax(&after), "name": names[argmax(&after)], "probabilities": after },
        "linf": linf,
        "success": pollster::block_on(async { out.success.into_data_async().await })
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .try_to_vec::<bool>()
            .map(|v| v[0])
            .unwrap_or(false),
        "out": a.out,
    });
    if a.json {
        println!("{result}");
    } else {
        println!("image {} (label {})", a.index, names[test.labels[a.index]]);
        println!(
            "before: {} ({:.3})",
            names[argmax(&before)],
            before[argmax(&before)]
        );
        println!(
            "after:  {} ({:.3})  [{} eps={} linf={linf:.4}]",
            names[argmax(&after)],
            after[argmax(&after)],
            attack.name(),
            a.eps
        );
        println!("wrote {}", a.out.display());
    }
    Ok(())
}

fn cmd_inspect(a: InspectArgs) -> Result<()> {
    let b = Bundle::load(&a.bundle)
        .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    let info = serde_json::json!({
        "format_version": rampart_core::bundle::BUNDLE_VERSION,
        "weights_bytes": b.weights_len(),
        "header": b.header,
    });
    if a.json {
        println!("{info}");
    } else {
        println!("{}", serde_json::to_string_pretty(&info)?);
    }
    Ok(())
}

fn cmd_export(a: ExportArgs, device: DeviceChoice) -> Result<()> {
    let b = Bundle::load(&a.bundle)
        .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    let model = b.model(&device.init()?)?;
    match a.format {
        ExportFormat::Safetensors => {
            let bytes = rampart_core::export::to_safetensors(
                &model,
                &serde_json::to_string(&b.header.model)?,
            )?;
            rampart_core::write_atomically(&a.out, &bytes)?;
        }
    }
    println!("wrote {}", a.out.display());
    Ok(())
}

fn cmd_predict(a: PredictArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let b = Bundle::load(&a.bundle)
        .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    let [c, h, w] = b.header.model.input_shape();
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
    if pixels.len() != c * h * w {
        bail!(
            "the image has {} values, the model takes {c}×{h}×{w} = {}",
            pixels.len(),
            c * h * w
        );
    }
    if let Some(v) = pixels.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        bail!("pixel value {v} is outside [0, 1]");
    }
    let dev = device.init()?;
    let model = b.model(&dev)?.valid();
    let x = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(pixels, [1, c, h, w]),
        &dev,
    );
    let logits = model.forward(x);
    let probabilities: Vec<f32> = burn::tensor::activation::softmax(logits.clone(), 1)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32");
    let logits: Vec<f32> = logits.into_data().try_to_vec::<f32>().expect("f32");
    let predicted = probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let label = &b.header.class_names[predicted];
    if a.json {
        println!(
            "{}",
            serde_json::json!({"logits": logits, "probabilities": probabilities, "predicted": predicted, "label": label})
        );
    } else {
        println!("{label} ({:.4})", probabilities[predicted]);
    }
    Ok(())
}

fn cmd_samples(a: SamplesArgs, data_dir: &Path) -> Result<()> {
    let (_, test) = load_split(&a.dataset, data_dir, Split::Test)?;
    let n = a.count.min(test.len());
    let images: Vec<&[f32]> = (0..n).map(|i| test.image(i)).collect();
    let json = serde_json::json!({"dataset": a.dataset, "shape": test.shape(), "labels": &test.labels[..n], "images": images});
    rampart_core::write_atomically(&a.out, json.to_string().as_bytes())?;
    println!("wrote {n} images to {}", a.out.display());
    Ok(())
}

fn cmd_bench_step(a: BenchStepArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
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
