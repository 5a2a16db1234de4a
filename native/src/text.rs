//! `rampart text …`: accident-report classification (ABEX-RAT) on MiniLM embeddings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Args, Subcommand, ValueEnum};
use rampart_core::argmax;
use rampart_core::bundle::{TextBundle, TextBundleHeader};
use rampart_core::data::text::{TextDataset, load_osha, report_text};
use rampart_core::encoder::SentenceEncoder;
use rampart_core::text::classifier::{
    MlpConfig, RatConfig, TextLoss, TextTrainConfig, logit_adjustment, predict_proba, train_mlp,
};
use rampart_core::text::explain;
use rampart_core::text::metrics::{ClassificationReport, classification_report};
use rampart_core::text::tfidf::Tfidf;
use sha2::{Digest, Sha256};

use crate::bar;
use crate::device::DeviceChoice;

#[derive(Subcommand)]
pub enum TextCommand {
    /// Train the report classifier (defaults: the best documented recipe) and write a bundle.
    Train(TextTrainArgs),
    /// Accuracy, macro-/weighted-F1, per-class metrics and confusion matrix on an OSHA-format file.
    Eval(TextEvalArgs),
    /// Class probabilities of one report.
    Predict(TextPredictArgs),
    /// Repeated stratified k-fold cross-validation of a recipe on train + validation reports
    /// (augmented reports join a training fold only when their source report is in it).
    Cv(TextCvArgs),
    /// Per-word importance of one report (gradient × input on word-piece vectors).
    Explain(TextExplainArgs),
    /// Robustness probe of one report: the smallest embedding perturbation and the fewest
    /// important words whose removal flip the prediction.
    Probe(TextProbeArgs),
}

#[derive(Args)]
pub struct EncoderArgs {
    /// The sentence-encoder folder (default: <data-dir>/../models/all-MiniLM-L6-v2).
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Embedding cache folder (default: $XDG_CACHE_HOME/rampart/embeddings or ~/.cache/…).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Padded tokens encoded per batch.
    #[arg(long, default_value_t = 8192)]
    batch_tokens: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum AugmentArg {
    /// The original training reports only.
    None,
    /// Plus the published ABEX augmentations (osha/train_abex.json).
    Abex,
    /// Plus reports written by `rampart augment` (--augment-file).
    File,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum FeaturesArg {
    /// MiniLM sentence embeddings.
    Embedding,
    /// TF-IDF of words and word pairs (fit on the training fold), the lexical baseline.
    Tfidf,
    /// Both, concatenated.
    Both,
}

#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    Ce,
    Focal,
}

/// A training recipe.
#[derive(Args)]
pub struct RecipeArgs {
    #[arg(long, value_enum, default_value_t = AugmentArg::Abex)]
    augment: AugmentArg,
    /// JSON lines from `rampart augment`, with --augment file.
    #[arg(long)]
    augment_file: Option<PathBuf>,
    /// Input features (cv only; bundles hold embedding classifiers).
    #[arg(long, value_enum, default_value_t = FeaturesArg::Embedding)]
    features: FeaturesArg,
    /// Hidden layer widths of the MLP, e.g. 512 or 512,256; 0: none (a linear model, i.e.
    /// logistic regression with --loss ce --rat off).
    #[arg(long, value_delimiter = ',', default_value = "512")]
    hidden: Vec<usize>,
    #[arg(long, default_value_t = 0.2)]
    dropout: f64,
    #[arg(long, value_enum, default_value_t = LossArg::Focal)]
    loss: LossArg,
    /// Focal loss γ.
    #[arg(long, default_value_t = 2.0)]
    gamma: f32,
    /// Per-class focal α: inverse class frequency (else none).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    balanced_alpha: bool,
    /// RAT probabilities of none, gaussian, fgm, pgd per mini-batch ("off": no RAT).
    #[arg(long, default_value = "0.25,0.25,0.25,0.25")]
    rat: String,
    /// RAT L2 radius in embedding space (embeddings have norm 1); 0.2 was best in the
    /// cross-validated search (bench/osha_tune.sh, docs/RESULTS.md).
    #[arg(long, default_value_t = 0.2)]
    rat_eps: f32,
    #[arg(long, default_value_t = 3)]
    rat_pgd_steps: usize,
    /// Post-hoc logit adjustment τ (logits − τ·ln class frequency); `text cv` takes a list
    /// and reports each.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    logit_adjust: Vec<f32>,
    /// Weight of the loss on perturbed embeddings.
    #[arg(long, default_value_t = 1.0)]
    rat_weight: f32,
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
pub struct TextTrainArgs {
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    recipe: RecipeArgs,
    /// Train on the first N reports of the (augmented) training set only.
    #[arg(long)]
    limit: Option<usize>,
    /// Validation file in the OSHA format (default: <data-dir>/osha/val.json).
    #[arg(long)]
    val: Option<PathBuf>,
    /// Where to write the bundle.
    #[arg(long, default_value = "osha.rampart-text")]
    out: PathBuf,
    /// Print the validation metrics as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TextCvArgs {
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    recipe: RecipeArgs,
    #[arg(long, default_value_t = 5)]
    folds: usize,
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// Print one JSON object (per-fold and mean ± sd of accuracy, macro- and weighted-F1).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TextEvalArgs {
    #[arg(long)]
    bundle: PathBuf,
    /// A JSON file in the OSHA format.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    encoder: EncoderArgs,
    /// Print one JSON object (accuracy, macro_f1, weighted_f1, per_class, confusion).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TextPredictArgs {
    #[arg(long)]
    bundle: PathBuf,
    /// The report text.
    text: String,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TextExplainArgs {
    #[arg(long)]
    bundle: PathBuf,
    /// The report text.
    text: String,
    /// Explain this class index instead of the prediction.
    #[arg(long)]
    class: Option<usize>,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TextProbeArgs {
    #[arg(long)]
    bundle: PathBuf,
    /// The report text.
    text: String,
    /// Largest embedding perturbation tried (L2; embeddings have norm 1).
    #[arg(long, default_value_t = 2.0)]
    max_radius: f32,
    /// Remove at most this many words.
    #[arg(long, default_value_t = 20)]
    max_words: usize,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[arg(long)]
    json: bool,
}

/// Embeddings cached on disk, one file per encoder fingerprint, keyed by the SHA-256 of the
/// text: `[32-byte key][dim × f32 LE]` records.
struct Cache {
    path: PathBuf,
    dim: usize,
    entries: HashMap<[u8; 32], Vec<f32>>,
    dirty: bool,
}

impl Cache {
    fn open(dir: &Path, fingerprint: &str, dim: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.emb", &fingerprint[..32]));
        let mut entries = HashMap::new();
        if let Ok(bytes) = std::fs::read(&path) {
            let rec = 32 + 4 * dim;
            // A damaged cache is only a cache: drop what does not parse and recompute.
            if bytes.len() % rec == 0 {
                for r in bytes.chunks_exact(rec) {
                    let key: [u8; 32] = r[..32].try_into().unwrap();
                    let v = r[32..]
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    entries.insert(key, v);
                }
            } else {
                eprintln!(
                    "warning: ignoring damaged embedding cache {}",
                    path.display()
                );
            }
        }
        Ok(Self {
            path,
            dim,
            entries,
            dirty: false,
        })
    }

    fn key(text: &str) -> [u8; 32] {
        Sha256::digest(text.as_bytes()).into()
    }

    fn save(&self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(self.entries.len() * (32 + 4 * self.dim));
        for (k, v) in &self.entries {
            bytes.extend_from_slice(k);
            for x in v {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        rampart_core::write_atomically(&self.path, &bytes)?;
        Ok(())
    }
}

fn cache_dir(explicit: &Option<PathBuf>) -> PathBuf {
    if let Some(d) = explicit {
        return d.clone();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("rampart/embeddings")
}

fn encoder_dir(args: &EncoderArgs, data_dir: &Path) -> PathBuf {
    args.encoder
        .clone()
        .unwrap_or_else(|| data_dir.join("../models/all-MiniLM-L6-v2"))
}

/// The encoder and its cache, ready to embed.
struct Embedder {
    encoder: SentenceEncoder,
    cache: Cache,
    device: Device,
    batch_tokens: usize,
}

impl Embedder {
    fn new(args: &EncoderArgs, data_dir: &Path, device: DeviceChoice) -> Result<Self> {
        let device = device.init()?;
        let dir = encoder_dir(args, data_dir);
        let encoder = SentenceEncoder::load(&dir, &device)
            .with_context(|| format!("loading the sentence encoder from {}", dir.display()))?;
        let cache = Cache::open(
            &cache_dir(&args.cache_dir),
            &encoder.fingerprint,
            encoder.dim(),
        )?;
        Ok(Self {
            encoder,
            cache,
            device,
            batch_tokens: args.batch_tokens,
        })
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let missing: Vec<&str> = {
            let mut seen = std::collections::HashSet::new();
            texts
                .iter()
                .copied()
                .filter(|t| !self.cache.entries.contains_key(&Cache::key(t)) && seen.insert(*t))
                .collect()
        };
        if !missing.is_empty() {
            let pb = bar(0, "embed");
            let fresh = pollster::block_on(self.encoder.embed(
                &missing,
                self.batch_tokens,
                &self.device,
                &mut |done, total| {
                    pb.set_length(total as u64);
                    pb.set_position(done as u64);
                },
            ))?;
            pb.finish_and_clear();
            for (t, v) in missing.iter().zip(fresh) {
                self.cache.entries.insert(Cache::key(t), v);
            }
            self.cache.dirty = true;
            self.cache.save()?;
        }
        Ok(texts
            .iter()
            .map(|t| self.cache.entries[&Cache::key(t)].clone())
            .collect())
    }
}

pub fn run(cmd: TextCommand, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    match cmd {
        TextCommand::Train(a) => cmd_train(a, device, data_dir),
        TextCommand::Eval(a) => cmd_eval(a, device, data_dir),
        TextCommand::Predict(a) => cmd_predict(a, device, data_dir),
        TextCommand::Cv(a) => cmd_cv(a, device, data_dir),
        TextCommand::Explain(a) => cmd_explain(a, device, data_dir),
        TextCommand::Probe(a) => cmd_probe(a, device, data_dir),
    }
}

fn rat_config(a: &RecipeArgs) -> Result<Option<RatConfig>> {
    if a.rat == "off" {
        return Ok(None);
    }
    let p: Vec<f32> = a
        .rat
        .split(',')
        .map(|s| s.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--rat takes four numbers or 'off', got '{}'", a.rat))?;
    let [p_none, p_gaussian, p_fgm, p_pgd] = p[..] else {
        bail!("--rat takes four probabilities (none,gaussian,fgm,pgd) or 'off'");
    };
    Ok(Some(RatConfig {
        p_none,
        p_gaussian,
        p_fgm,
        p_pgd,
        eps: a.rat_eps,
        pgd_steps: a.rat_pgd_steps,
        weight: a.rat_weight,
    }))
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

impl RecipeArgs {
    fn config(&self) -> Result<TextTrainConfig> {
        Ok(TextTrainConfig {
            hidden: self.hidden.iter().copied().filter(|&h| h > 0).collect(),
            dropout: self.dropout,
            loss: match self.loss {
                LossArg::Ce => TextLoss::CrossEntropy,
                LossArg::Focal => TextLoss::Focal {
                    gamma: self.gamma,
                    alpha: None,
                    balanced_alpha: self.balanced_alpha,
                },
            },
            rat: rat_config(self)?,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            seed: self.seed,
        })
    }

    fn augment_name(&self) -> String {
        match self.augment {
            AugmentArg::None => "none".into(),
            AugmentArg::Abex => "abex".into(),
            AugmentArg::File => format!(
                "file:{}",
                self.augment_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        }
    }

    /// The augmented reports the recipe adds to its training reports, if any.
    fn augmentation(&self, osha: &Path, class_names: &[String]) -> Result<Option<TextDataset>> {
        if self.augment_file.is_some() && !matches!(self.augment, AugmentArg::File) {
            bail!("--augment-file needs --augment file");
        }
        Ok(match self.augment {
            AugmentArg::None => None,
            AugmentArg::Abex => Some(load_osha(&osha.join("train_abex.json"))?),
            AugmentArg::File => {
                let path = self
                    .augment_file
                    .as_ref()
                    .context("--augment file needs --augment-file FILE.jsonl")?;
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                Some(rampart_core::augment::parse_jsonl(
                    &bytes,
                    &path.display().to_string(),
                    class_names,
                )?)
            }
        })
    }
}

fn evaluate(
    bundle: &TextBundle,
    data: &TextDataset,
    embedder: &mut Embedder,
) -> Result<ClassificationReport> {
    let x = embedder.embed(&data.texts())?;
    let model = bundle.model(&embedder.device)?;
    let probs = pollster::block_on(predict_proba(&model, &x, &embedder.device))?;
    let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    Ok(classification_report(
        &data.labels(),
        &predicted,
        &bundle.header.class_names,
    )?)
}

fn cmd_train(a: TextTrainArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let train = training_set(&a, data_dir)?;
    let val = load_osha(
        &a.val
            .clone()
            .unwrap_or_else(|| data_dir.join("osha/val.json")),
    )?;
    let mut embedder = Embedder::new(&a.encoder, data_dir, device)?;
    let clock = std::time::Instant::now();
    let x = embedder.embed(&train.texts())?;
    // Embedded here (not lazily in `evaluate`) so that the embedding time covers both files.
    embedder.embed(&val.texts())?;
    let embed_seconds = clock.elapsed().as_secs_f64();
    let config = a.recipe.config()?;
    let clock = std::time::Instant::now();
    let pb = bar(config.epochs as u64, "train");
    let mut history = Vec::new();
    let model = train_mlp(
        &x,
        &train.labels(),
        train.num_classes(),
        &config,
        &embedder.device,
        &mut |e| {
            pb.inc(1);
            pb.set_message(format!("loss {:.3}", e.train_loss));
            history.push(e.clone());
        },
    )?;
    pb.finish_and_clear();
    let train_seconds = clock.elapsed().as_secs_f64();
    let tau = match a.recipe.logit_adjust[..] {
        [t] if t.is_finite() => t,
        _ => bail!("text train takes one --logit-adjust value"),
    };
    let model = model.shift_logits(&logit_adjustment(&train.class_counts(), tau))?;
    let header = TextBundleHeader {
        mlp: MlpConfig {
            input: embedder.encoder.dim(),
            hidden: config.hidden.clone(),
            num_classes: train.num_classes(),
            dropout: config.dropout,
        },
        class_names: train.class_names.clone(),
        encoder: "all-MiniLM-L6-v2".into(),
        encoder_fingerprint: embedder.encoder.fingerprint.clone(),
        recipe: serde_json::json!({
            "augment": a.recipe.augment_name(),
            "logit_adjust": tau,
            "train_reports": train.len(),
            "config": config,
        }),
        metrics: serde_json::Value::Null,
        created_by: format!("rampart {}", env!("CARGO_PKG_VERSION")),
    };
    let mut bundle = TextBundle::new(&model, header)?;
    let report = evaluate(&bundle, &val, &mut embedder)?;
    let timing = serde_json::json!({
        "embed_seconds": embed_seconds, "train_seconds": train_seconds,
        "reports_embedded": train.len() + val.len(), "train_samples": train.len(),
    });
    bundle.header.metrics =
        serde_json::json!({ "validation": report, "history": history, "timing": timing });
    bundle.save(&a.out)?;
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

fn check_encoder(bundle: &TextBundle, embedder: &Embedder) -> Result<()> {
    if bundle.header.encoder_fingerprint != embedder.encoder.fingerprint {
        bail!(
            "this bundle was trained on another encoder ({}, fingerprint {}…); pass --encoder",
            bundle.header.encoder,
            &bundle.header.encoder_fingerprint[..12]
        );
    }
    Ok(())
}

fn cmd_eval(a: TextEvalArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let bundle = TextBundle::load(&a.bundle)?;
    let data = load_osha(&a.data)?;
    let mut embedder = Embedder::new(&a.encoder, data_dir, device)?;
    check_encoder(&bundle, &embedder)?;
    let report = evaluate(&bundle, &data, &mut embedder)?;
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

fn cmd_predict(a: TextPredictArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let bundle = TextBundle::load(&a.bundle)?;
    let text = report_text(&a.text, "");
    if text.is_empty() {
        bail!("the report text is empty");
    }
    let mut embedder = Embedder::new(&a.encoder, data_dir, device)?;
    check_encoder(&bundle, &embedder)?;
    let x = embedder.embed(&[&text])?;
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

fn cmd_cv(a: TextCvArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    use rampart_core::text::cv::stratified_folds;
    use rampart_core::text::metrics::mean_sd;
    let osha = data_dir.join("osha");
    let base = load_osha(&osha.join("train.json"))?.concat(&load_osha(&osha.join("val.json"))?)?;
    let augmented = a.recipe.augmentation(&osha, &base.class_names)?;
    let config = a.recipe.config()?;
    let mut embedder = Embedder::new(&a.encoder, data_dir, device)?;
    let x = embedder.embed(&base.texts())?;
    let xa = match &augmented {
        Some(d) => embedder.embed(&d.texts())?,
        None => Vec::new(),
    };
    let labels = base.labels();
    let mut runs = Vec::new();
    let pb = bar((a.folds * a.repeats) as u64, "cv");
    for r in 0..a.repeats {
        let fold = stratified_folds(
            &labels,
            a.folds,
            a.recipe.seed.wrapping_add(1000 + r as u64),
        )?;
        for f in 0..a.folds {
            let held: std::collections::HashSet<&str> = base
                .records
                .iter()
                .zip(&fold)
                .filter(|(_, k)| **k == f)
                .map(|(rec, _)| rec.id.as_str())
                .collect();
            let (mut tx, mut ty, mut vx, mut vy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            // The texts in the same order, for lexical features.
            let (mut train_texts, mut val_texts): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
            for (((v, &c), &k), rec) in x.iter().zip(&labels).zip(&fold).zip(&base.records) {
                if k == f {
                    vx.push(v.clone());
                    vy.push(c);
                    val_texts.push(&rec.text);
                } else {
                    tx.push(v.clone());
                    ty.push(c);
                    train_texts.push(&rec.text);
                }
            }
            if let Some(aug) = &augmented {
                for (rec, v) in aug.records.iter().zip(&xa) {
                    // An augmentation of a held-out report would leak it into training.
                    if !rec.sources.iter().any(|s| held.contains(s.as_str())) {
                        tx.push(v.clone());
                        ty.push(rec.label);
                        train_texts.push(&rec.text);
                    }
                }
            }
            if a.recipe.features != FeaturesArg::Embedding {
                // Fit the vocabulary on the training fold only.
                let tfidf = Tfidf::fit(&train_texts, 2, 20_000, true)?;
                let lexical = |texts: &[&str], dense: &mut Vec<Vec<f32>>| {
                    for (i, t) in texts.iter().enumerate() {
                        let v = tfidf.transform(t);
                        if a.recipe.features == FeaturesArg::Both {
                            dense[i].extend(v);
                        } else {
                            dense[i] = v;
                        }
                    }
                };
                lexical(&train_texts, &mut tx);
                lexical(&val_texts, &mut vx);
            }
            let run_config = TextTrainConfig {
                seed: config.seed.wrapping_add((r * a.folds + f) as u64),
                ..config.clone()
            };
            let model = train_mlp(
                &tx,
                &ty,
                base.num_classes(),
                &run_config,
                &embedder.device,
                &mut |_| {},
            )?;
            let probs = pollster::block_on(predict_proba(&model, &vx, &embedder.device))?;
            let mut counts = vec![0usize; base.num_classes()];
            ty.iter().for_each(|&c| counts[c] += 1);
            let mut per_tau = Vec::new();
            for &tau in &a.recipe.logit_adjust {
                let shift = logit_adjustment(&counts, tau);
                let pred: Vec<usize> = probs
                    .iter()
                    .map(|p| {
                        let z: Vec<f32> = p
                            .iter()
                            .zip(&shift)
                            .map(|(p, s)| p.max(1e-30).ln() + s)
                            .collect();
                        argmax(&z)
                    })
                    .collect();
                let report = classification_report(&vy, &pred, &base.class_names)?;
                let per_class_f1: Vec<f64> = report.per_class.iter().map(|c| c.f1).collect();
                per_tau.push(serde_json::json!({
                    "tau": tau, "accuracy": report.accuracy,
                    "macro_f1": report.macro_f1, "weighted_f1": report.weighted_f1,
                    "per_class_f1": per_class_f1,
                }));
            }
            let mut run = per_tau[0].clone();
            run["repeat"] = r.into();
            run["fold"] = f.into();
            run["logit_adjust"] = per_tau.into();
            runs.push(run);
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    let stat_of = |t: usize, key: &str| {
        let v: Vec<f64> = runs
            .iter()
            .map(|r| r["logit_adjust"][t][key].as_f64().unwrap())
            .collect();
        let (m, sd) = mean_sd(&v);
        serde_json::json!({"mean": m, "sd": sd})
    };
    let stat = |key: &str| stat_of(0, key);
    let by_tau: Vec<serde_json::Value> = a
        .recipe
        .logit_adjust
        .iter()
        .enumerate()
        .map(|(t, tau)| {
            let per_class: Vec<serde_json::Value> = (0..base.num_classes())
                .map(|c| {
                    let v: Vec<f64> = runs
                        .iter()
                        .map(|r| r["logit_adjust"][t]["per_class_f1"][c].as_f64().unwrap())
                        .collect();
                    let (m, sd) = mean_sd(&v);
                    serde_json::json!({"class": base.class_names[c], "f1": {"mean": m, "sd": sd}})
                })
                .collect();
            serde_json::json!({
                "tau": tau, "accuracy": stat_of(t, "accuracy"),
                "macro_f1": stat_of(t, "macro_f1"), "weighted_f1": stat_of(t, "weighted_f1"),
                "per_class": per_class,
            })
        })
        .collect();
    let summary = serde_json::json!({
        "folds": a.folds, "repeats": a.repeats, "reports": base.len(),
        "augment": a.recipe.augment_name(), "features": a.recipe.features.to_possible_value().map(|v| v.get_name().to_string()),
        "config": config,
        "accuracy": stat("accuracy"), "macro_f1": stat("macro_f1"), "weighted_f1": stat("weighted_f1"),
        "logit_adjust": by_tau.clone(), "runs": runs,
    });
    if a.json {
        println!("{summary}");
    } else {
        for t in &by_tau {
            print!("logit adjust τ = {}:", t["tau"]);
            for key in ["accuracy", "macro_f1", "weighted_f1"] {
                print!(
                    "  {key} {:.4} ± {:.4}",
                    t[key]["mean"].as_f64().unwrap(),
                    t[key]["sd"].as_f64().unwrap()
                );
            }
            println!();
        }
    }
    Ok(())
}

fn cmd_explain(a: TextExplainArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let bundle = TextBundle::load(&a.bundle)?;
    let embedder = Embedder::new(&a.encoder, data_dir, device)?;
    check_encoder(&bundle, &embedder)?;
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

fn cmd_probe(a: TextProbeArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let bundle = TextBundle::load(&a.bundle)?;
    let embedder = Embedder::new(&a.encoder, data_dir, device)?;
    check_encoder(&bundle, &embedder)?;
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
