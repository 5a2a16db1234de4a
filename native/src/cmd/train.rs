//! `rampart train`: trains an image classifier and writes its bundle and JSON metrics.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use rampart_core::bundle::{Bundle, BundleHeader};
use rampart_core::data::{HoldoutSpec, Split};
use rampart_core::eval::evaluate;
use rampart_core::eval::report::{TestMetrics, TrainReport};
use rampart_core::train::{
    Ancra, Balance, CheckpointOptions, Method, OptimizerKind, TrainConfig, TrainEvent, train_on,
};

use crate::args::ArchArgs;
use crate::device::DeviceChoice;
use crate::{bar, load_split};

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
pub struct TrainArgs {
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
    /// Train data-parallel on these devices, e.g. cpu,cpu or wgpu,wgpu: each step splits its
    /// batch over them and sums the gradients on the first (default: the one --device).
    #[arg(long, value_enum, value_delimiter = ',')]
    devices: Vec<DeviceChoice>,
    /// Start afresh even though an earlier run's checkpoint, bundle or metrics file exists
    /// (they are replaced); without it such files are never touched.
    #[arg(long)]
    overwrite: bool,
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

pub fn cmd_train(a: TrainArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let (kind, full) = load_split(&a.dataset, data_dir, Split::Train)?;
    let (train_set, val_set) = full.holdout(&HoldoutSpec {
        limit: a.limit,
        val_size: a.val_size,
        long_tail: a.long_tail,
        long_tail_seed: a.long_tail_seed,
        seed: a.seed,
    })?;
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
    // Data parallel over --devices (the first holds the model), else the one --device.
    let devices = if a.devices.is_empty() {
        vec![device.init()?]
    } else {
        a.devices
            .iter()
            .map(|d| d.init())
            .collect::<Result<Vec<_>>>()?
    };
    let dev = devices[0].clone();
    let checkpoint = CheckpointOptions {
        path: a
            .checkpoint
            .clone()
            .unwrap_or_else(|| a.out.with_extension("ckpt")),
        resume: a.resume,
        stop_after_steps: a.stop_after_steps,
    };
    let metrics_path = a
        .metrics
        .clone()
        .unwrap_or_else(|| a.out.with_extension("json"));
    if !a.overwrite {
        if !a.resume && checkpoint.path.exists() {
            bail!(
                "{} holds an unfinished run: pass --resume to continue it, or --overwrite to start over",
                checkpoint.path.display()
            );
        }
        if let Some(p) = [&a.out, &metrics_path].into_iter().find(|p| p.exists()) {
            bail!(
                "{} exists: pass --overwrite to replace it, or choose another --out",
                p.display()
            );
        }
    } else if !a.resume && checkpoint.path.exists() {
        std::fs::remove_file(&checkpoint.path)
            .with_context(|| format!("removing {}", checkpoint.path.display()))?;
    }
    let mut pb: Option<ProgressBar> = None;
    let quiet = a.json;
    let trained = train_on(
        &devices,
        &model_config,
        &config,
        &train_set,
        Some(&val_set),
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
    // Final test evaluation: clean accuracy and per-class recall.
    let test = if a.test_size > 0 {
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
        Some(TestMetrics::from_eval(&report))
    } else {
        None
    };
    let metrics = TrainReport {
        dataset: kind.name().into(),
        method: config.method.name().into(),
        balance: config.balance.name().into(),
        train_class_counts: train_set.class_counts(),
        train_seconds: trained.history.iter().map(|m| m.seconds).sum::<f64>(),
        history: trained.history,
        kept_epoch: trained.epoch.map(|e| e + 1),
        test,
    };
    let header = BundleHeader {
        model: model_config,
        class_names: train_set.class_names.clone(),
        dataset: kind.name().into(),
        recipe: serde_json::to_value(&config)?,
        metrics: serde_json::to_value(&metrics)?,
        created_by: format!("rampart {}", env!("CARGO_PKG_VERSION")),
    };
    Bundle::new(&trained.model, header)?.save(&a.out)?;
    rampart_core::write_atomically(
        &metrics_path,
        serde_json::to_string_pretty(&metrics)?.as_bytes(),
    )?;
    std::fs::remove_file(&checkpoint.path).ok();
    if a.json {
        println!("{}", serde_json::to_string(&metrics)?);
    } else {
        println!("wrote {} and {}", a.out.display(), metrics_path.display());
        if let Some(t) = &metrics.test {
            println!("test clean accuracy: {}", t.test_clean_accuracy);
        }
    }
    Ok(())
}
