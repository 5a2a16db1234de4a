//! `rampart text train`: trains the report classifier and writes its bundle.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use rampart_core::bundle::{TextBundle, TextBundleHeader};
use rampart_core::text::checkpoint::TextCheckpointOptions;
use rampart_core::text::classifier::{
    MAX_SEEDS, Mlp, MlpConfig, TextTrainConfig, evaluate, logit_adjustment, member_checkpoint,
    train_mlp_resumable,
};
use rampart_core::text::data::{TextDataset, load_osha};
use rampart_core::text::embed::CachedEncoder;
use rampart_core::text::encoder::TokenStates;
use rampart_core::text::finetune::{
    FineTuneConfig, TuneData, TuneEpoch, TunedClassifier, fine_tune,
};

use super::{
    EncoderArgs, FeaturesArg, RecipeArgs, embed, open_encoder, open_for_bundle, token_states,
};
use crate::bar;
use crate::device::DeviceChoice;

#[derive(Args)]
pub struct TextTrainArgs {
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    pub(super) recipe: RecipeArgs,
    /// Train on the first N reports of the (augmented) training set only.
    #[arg(long)]
    pub(super) limit: Option<usize>,
    /// Validation file in the OSHA format (default: <data-dir>/osha/val.json).
    #[arg(long)]
    pub(super) val: Option<PathBuf>,
    /// Where to write the bundle.
    #[arg(long, default_value = "osha.rampart-text")]
    pub(super) out: PathBuf,
    /// Print the validation metrics as one JSON object.
    #[arg(long)]
    pub(super) json: bool,
    /// Checkpoint written after every epoch (default: <out>.ckpt); removed when training ends.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint if there is one (same recipe and data, or it is refused).
    #[arg(long)]
    resume: bool,
    /// Start afresh even though an earlier run's checkpoint or bundle exists, replacing them.
    #[arg(long)]
    overwrite: bool,
    /// Stop after this many epochs, leaving the checkpoint (for testing resumption).
    #[arg(long, hide = true)]
    stop_after_epochs: Option<usize>,
}

/// Fine-tuning's checkpoint beside the head's: `<checkpoint>.tune`.
fn tune_checkpoint(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tune");
    path.with_file_name(name)
}

/// What the fine-tuning stage ends with.
struct Tuned {
    model: TunedClassifier,
    history: Vec<TuneEpoch>,
    kept_epoch: usize,
    seconds: f64,
    states_seconds: f64,
    train_states_seconds: f64,
}

/// Fine-tunes the encoder's top layers with `head`, early-stopping on `val`; `None` when
/// stopped through the checkpoint options (tests).
fn fine_tune_stage(
    embedder: &CachedEncoder,
    head: Mlp,
    train: &TextDataset,
    val: &TextDataset,
    config: &TextTrainConfig,
    tune: &FineTuneConfig,
    checkpoint: &TextCheckpointOptions,
) -> Result<Option<Tuned>> {
    let clock = std::time::Instant::now();
    let states = |texts: &[&str]| token_states(embedder, texts, tune.layers);
    let train_states = states(&train.texts())?;
    // The training reports' alone: bench/finetune_speed.sh compares it with PyTorch's.
    let train_states_seconds = clock.elapsed().as_secs_f64();
    let val_states = states(&val.texts())?;
    let (train_states, val_states): (Vec<&TokenStates>, Vec<&TokenStates>) =
        (train_states.iter().collect(), val_states.iter().collect());
    let states_seconds = clock.elapsed().as_secs_f64();
    let clock = std::time::Instant::now();
    let pb = bar(tune.epochs as u64, "fine-tune");
    let (train_y, val_y) = (train.labels(), val.labels());
    let t = fine_tune(
        &embedder.encoder,
        head,
        TuneData {
            states: &train_states,
            labels: &train_y,
        },
        Some(TuneData {
            states: &val_states,
            labels: &val_y,
        }),
        config,
        &embedder.device,
        Some(checkpoint),
        &mut |e| {
            pb.set_position((e.epoch + 1) as u64);
            pb.set_message(format!(
                "loss {:.3} val macro-F1 {:.3}",
                e.train_loss,
                e.val_macro_f1.unwrap_or(f64::NAN)
            ));
        },
    )?;
    pb.finish_and_clear();
    if !t.completed {
        return Ok(None);
    }
    Ok(Some(Tuned {
        model: t.model,
        history: t.history,
        kept_epoch: t.kept_epoch,
        seconds: clock.elapsed().as_secs_f64(),
        states_seconds,
        train_states_seconds,
    }))
}

/// `<out>.ckpt`.
fn default_checkpoint(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".ckpt");
    out.with_file_name(name)
}

fn training_set(a: &TextTrainArgs, data_dir: &Path) -> Result<TextDataset> {
    let osha = data_dir.join("osha");
    if a.recipe.features != FeaturesArg::Embedding {
        bail!("--features tfidf|both is for `text cv` only: bundles hold embedding classifiers");
    }
    let train = load_osha(&osha.join("train.json"))?;
    let mut set = match a.recipe.augmentation(&osha, &train.class_names)? {
        None => train,
        Some(extra) => train.concat(&extra)?,
    };
    if let Some(n) = a.limit {
        set.records.truncate(n);
    }
    Ok(set)
}

pub fn cmd_train(a: TextTrainArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let checkpoint = TextCheckpointOptions {
        path: a
            .checkpoint
            .clone()
            .unwrap_or_else(|| default_checkpoint(&a.out)),
        resume: a.resume,
        stop_after_epochs: a.stop_after_epochs,
    };
    // Nothing an earlier run wrote is replaced without --overwrite.
    if !a.overwrite {
        if !a.resume && checkpoint.path.exists() {
            bail!(
                "{} holds an unfinished run: pass --resume to continue it, or --overwrite to start over",
                checkpoint.path.display()
            );
        }
        if a.out.exists() {
            bail!(
                "{} exists: pass --overwrite to replace it, or choose another --out",
                a.out.display()
            );
        }
    } else if !a.resume {
        // An earlier run's checkpoints, a seed ensemble's members' and fine-tuning's included.
        let members = (1..MAX_SEEDS).map(|i| member_checkpoint(&checkpoint.path, i));
        let tune = tune_checkpoint(&checkpoint.path);
        for path in [checkpoint.path.clone(), tune].into_iter().chain(members) {
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    // A bad recipe is refused before anything is embedded or trained.
    let config = a.recipe.config()?;
    config.validate()?;
    let train = training_set(&a, data_dir)?;
    let val = load_osha(
        &a.val
            .clone()
            .unwrap_or_else(|| data_dir.join("osha/val.json")),
    )?;
    let mut embedder = open_encoder(&a.encoder, data_dir, device)?;
    if let Some(t) = &config.fine_tune
        && t.layers > embedder.encoder.num_layers()
    {
        bail!(
            "--fine-tune-layers {}: the encoder has {} layers",
            t.layers,
            embedder.encoder.num_layers()
        );
    }
    let clock = std::time::Instant::now();
    let x = embed(&mut embedder, &train.texts())?;
    // Embedded here, before training, so that the embedding time covers both files; a
    // fine-tuned encoder embeds them after training instead, so the base encoder need not.
    let val_x = match config.fine_tune {
        None => Some(embed(&mut embedder, &val.texts())?),
        Some(_) => None,
    };
    let embed_seconds = clock.elapsed().as_secs_f64();
    let clock = std::time::Instant::now();
    let pb = bar((config.epochs * config.seeds) as u64, "train");

    let trained = train_mlp_resumable(
        &x,
        &train.labels(),
        train.num_classes(),
        &config,
        &embedder.device,
        Some(&checkpoint),
        &mut |e| {
            pb.set_position((e.member * config.epochs + e.epoch + 1) as u64);
            pb.set_message(format!("loss {:.3}", e.train_loss));
        },
    )?;
    pb.finish_and_clear();
    if !trained.completed {
        eprintln!("stopped early; checkpoint at {}", checkpoint.path.display());
        return Ok(());
    }
    let (mut model, history) = (trained.model, trained.history);
    let train_seconds = clock.elapsed().as_secs_f64();
    let base_fingerprint = embedder.encoder.fingerprint.clone();
    let mut tuned = None;
    if let Some(tune) = &config.fine_tune {
        let options = TextCheckpointOptions {
            path: tune_checkpoint(&checkpoint.path),
            ..checkpoint.clone()
        };
        let Some(t) = fine_tune_stage(&embedder, model, &train, &val, &config, tune, &options)?
        else {
            eprintln!("stopped early; checkpoint at {}", options.path.display());
            return Ok(());
        };
        model = t.model.head.clone();
        tuned = Some(t);
    }
    let tau = match a.recipe.logit_adjust[..] {
        [t] if t.is_finite() => t,
        _ => bail!("text train takes one --logit-adjust value"),
    };
    let model = model.shift_logits(&logit_adjustment(&train.class_counts(), tau))?;
    let header = TextBundleHeader {
        mlp: MlpConfig {
            input: embedder.encoder.dim(),
            // An ensemble's members side by side.
            hidden: model.hidden(),
            num_classes: train.num_classes(),
            dropout: config.dropout,
        },
        class_names: train.class_names.clone(),
        encoder: "all-MiniLM-L6-v2".into(),
        encoder_fingerprint: base_fingerprint.clone(),
        recipe: serde_json::json!({
            "augment": a.recipe.augment_name(),
            "logit_adjust": tau,
            "seeds": config.seeds,
            "train_reports": train.len(),
            "config": config,
        }),
        metrics: serde_json::Value::Null,
        created_by: format!("rampart {}", env!("CARGO_PKG_VERSION")),
        fine_tuned: None,
    };
    let (mut bundle, fine_tuning) = match &tuned {
        None => (TextBundle::new(&model, header)?, serde_json::Value::Null),
        Some(t) => {
            let layers = &t.model.layers;
            let encoder = pollster::block_on(
                open_encoder(&a.encoder, data_dir, device)?
                    .encoder
                    .with_top_layers(layers.clone()),
            )?;
            let header = TextBundleHeader {
                encoder_fingerprint: encoder.fingerprint.clone(),
                ..header
            };
            let bundle = TextBundle::fine_tuned(&model, layers, &base_fingerprint, header)?;
            let info = serde_json::json!({
                "history": t.history, "kept_epoch": t.kept_epoch,
                "seconds": t.seconds, "states_seconds": t.states_seconds,
            });
            (bundle, info)
        }
    };
    // Scored through the bundle's own weights and encoder, as a user of the file would see
    // them (a fine-tuned encoder embeds the validation reports anew).
    let val_x = match val_x {
        Some(v) if tuned.is_none() => v,
        _ => {
            let mut scorer = open_for_bundle(&a.encoder, data_dir, device, &bundle)?;
            embed(&mut scorer, &val.texts())?
        }
    };
    let report = pollster::block_on(evaluate(
        &bundle.model(&embedder.device)?,
        &val_x,
        &val.labels(),
        &bundle.header.class_names,
        &embedder.device,
    ))?;
    let timing = serde_json::json!({
        "embed_seconds": embed_seconds, "train_seconds": train_seconds,
        "fine_tune_seconds": tuned.as_ref().map(|t| t.seconds + t.states_seconds),
        "fine_tune_train_states_seconds": tuned.as_ref().map(|t| t.train_states_seconds),
        "fine_tune_epoch_seconds": tuned
            .as_ref()
            .map(|t| t.history.iter().map(|e| e.seconds).collect::<Vec<_>>()),
        "reports_embedded": train.len() + val.len(), "train_samples": train.len(),
    });
    bundle.header.metrics = serde_json::json!({
        "validation": report, "history": history, "timing": timing, "fine_tuning": fine_tuning,
    });
    bundle.save(&a.out)?;
    // The bundle holds everything now; a later run starts afresh.
    std::fs::remove_file(&checkpoint.path).ok();
    std::fs::remove_file(tune_checkpoint(&checkpoint.path)).ok();
    for i in 1..config.seeds {
        std::fs::remove_file(member_checkpoint(&checkpoint.path, i)).ok();
    }
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["timing"] = timing;
        println!("{v}");
    } else {
        println!("wrote {}", a.out.display());
        println!(
            "validation: accuracy {:.4}  macro-F1 {:.4}  weighted-F1 {:.4}",
            report.accuracy, report.macro_f1, report.weighted_f1
        );
    }
    Ok(())
}
