//! `rampart text …`: accident-report classification (ABEX-RAT) on MiniLM embeddings. One
//! module per verb; this one holds the flags they share and opens the cached encoder.

mod cv;
mod eval;
mod explain;
mod train;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use rampart_core::bundle::TextBundle;
use rampart_core::text::classifier::{RatConfig, TextLoss, TextTrainConfig};
use rampart_core::text::cv::Features;
use rampart_core::text::data::{TextDataset, load_osha};
use rampart_core::text::embed::{CachedEncoder, default_cache_dir};
use rampart_core::text::encoder::{SentenceEncoder, TokenStates};
use rampart_core::text::finetune::FineTuneConfig;

use crate::bar;
use crate::device::DeviceChoice;
use cv::TextCvArgs;
use eval::{TextEvalArgs, TextPredictArgs};
use explain::{TextExplainArgs, TextProbeArgs};
use train::TextTrainArgs;

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
pub(super) enum AugmentArg {
    /// The original training reports only.
    None,
    /// Plus the published ABEX augmentations (osha/train_abex.json).
    Abex,
    /// Plus reports written by `rampart augment` (--augment-file).
    File,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub(super) enum FeaturesArg {
    /// MiniLM sentence embeddings.
    Embedding,
    /// TF-IDF of words and word pairs (fit on the training fold), the lexical baseline.
    Tfidf,
    /// Both, concatenated.
    Both,
    /// The recipe on embeddings stacked with logistic regression on TF-IDF (log-probabilities
    /// averaged).
    Stack,
}

impl From<FeaturesArg> for Features {
    fn from(f: FeaturesArg) -> Self {
        match f {
            FeaturesArg::Embedding => Features::Embedding,
            FeaturesArg::Tfidf => Features::Tfidf,
            FeaturesArg::Both => Features::Both,
            FeaturesArg::Stack => Features::Stack,
        }
    }
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
    pub(super) augment: AugmentArg,
    /// JSON lines from `rampart augment`, with --augment file.
    #[arg(long)]
    pub(super) augment_file: Option<PathBuf>,
    /// Input features (cv only; bundles hold embedding classifiers).
    #[arg(long, value_enum, default_value_t = FeaturesArg::Embedding)]
    pub(super) features: FeaturesArg,
    /// Hidden layer widths of the MLP, e.g. 512 or 512,256; 0: none (a linear model, i.e.
    /// logistic regression with --loss ce --rat off).
    #[arg(long, value_delimiter = ',', default_value = "512")]
    pub(super) hidden: Vec<usize>,
    #[arg(long, default_value_t = 0.2)]
    pub(super) dropout: f64,
    #[arg(long, value_enum, default_value_t = LossArg::Focal)]
    loss: LossArg,
    /// Focal loss γ.
    #[arg(long, default_value_t = 2.0)]
    pub(super) gamma: f32,
    /// Per-class focal α: inverse class frequency (else none).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub(super) balanced_alpha: bool,
    /// RAT probabilities of none, gaussian, fgm, pgd per mini-batch ("off": no RAT).
    #[arg(long, default_value = "0.25,0.25,0.25,0.25")]
    pub(super) rat: String,
    /// RAT L2 radius in embedding space (embeddings have norm 1); 0.2 was best in the
    /// cross-validated search (bench/osha_tune.sh, docs/RESULTS.md).
    #[arg(long, default_value_t = 0.2)]
    pub(super) rat_eps: f32,
    #[arg(long, default_value_t = 3)]
    pub(super) rat_pgd_steps: usize,
    /// Post-hoc logit adjustment τ (logits − τ·ln class frequency); `text cv` takes a list
    /// and reports each.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub(super) logit_adjust: Vec<f32>,
    /// Weight of the loss on perturbed embeddings.
    #[arg(long, default_value_t = 1.0)]
    pub(super) rat_weight: f32,
    #[arg(long, default_value_t = 30)]
    pub(super) epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub(super) batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub(super) lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub(super) weight_decay: f64,
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Members of a seed ensemble: MLPs trained from different seeds whose logits are
    /// averaged (the bundle holds them as one wider MLP).
    #[arg(long, default_value_t = 1)]
    pub(super) seeds: usize,
    /// After the head trains on frozen embeddings, fine-tune the encoder's top layers together
    /// with it (focal loss, RAT on the pooled embedding, layer-wise learning-rate decay,
    /// warm-up, early stopping on the validation reports). The default for one model on
    /// embeddings; seed ensembles (--seeds above 1) and --features other than embedding keep
    /// the encoder frozen unless this flag is given (and then fail: they need it frozen).
    #[arg(long)]
    pub(super) fine_tune: bool,
    /// Keep the encoder frozen: the head trains on fixed embeddings (the recipe before
    /// fine-tuning became the default; faster, 1.7 points less cross-validated macro-F1).
    #[arg(long, conflicts_with = "fine_tune")]
    pub(super) no_fine_tune: bool,
    /// Top transformer layers fine-tuned (6: all of MiniLM's). One layer and three epochs is
    /// what `text cv` measured (docs/RESULTS.md) and trains in about 11 minutes here.
    #[arg(long, default_value_t = 1)]
    pub(super) fine_tune_layers: usize,
    #[arg(long, default_value_t = 3)]
    pub(super) fine_tune_epochs: usize,
    /// Reports per fine-tuning mini-batch.
    #[arg(long, default_value_t = 16)]
    pub(super) fine_tune_batch_size: usize,
    /// Learning rate of the top fine-tuned layer.
    #[arg(long, default_value_t = 5e-5)]
    pub(super) fine_tune_lr: f64,
    /// Learning-rate factor per layer further down.
    #[arg(long, default_value_t = 0.8)]
    pub(super) layer_decay: f64,
    /// Learning rate of the head while the encoder fine-tunes.
    #[arg(long, default_value_t = 1e-4)]
    pub(super) fine_tune_head_lr: f64,
    /// Fraction of the fine-tuning steps with a linear warm-up.
    #[arg(long, default_value_t = 0.1)]
    pub(super) warmup: f64,
    /// Fine-tuning epochs without a better validation macro-F1 before stopping (0: never).
    #[arg(long, default_value_t = 2)]
    pub(super) patience: usize,
    /// RAT on the token vectors entering the fine-tuned layers instead of the pooled embedding
    /// (FGM and PGD then cost extra passes through those layers).
    #[arg(long)]
    pub(super) token_rat: bool,
    /// L2 radius of each token vector's perturbation with --token-rat (MiniLM's token vectors
    /// between layers have norms of about 10 to 13).
    #[arg(long, default_value_t = 1.0)]
    pub(super) token_eps: f32,
}

/// Opens the encoder and its embedding cache.
pub(super) fn open_encoder(
    args: &EncoderArgs,
    data_dir: &Path,
    device: DeviceChoice,
) -> Result<CachedEncoder> {
    let dir = encoder_dir(args, data_dir);
    let cache = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let encoder = CachedEncoder::open(&dir, &cache, args.batch_tokens, &device.init()?)
        .with_context(|| format!("loading the sentence encoder from {}", dir.display()))?;
    Ok(warn_if_damaged(encoder))
}

fn warn_if_damaged(encoder: CachedEncoder) -> CachedEncoder {
    if encoder.cache.damaged {
        eprintln!(
            "warning: ignoring damaged embedding cache {}",
            encoder.cache.path().display()
        );
    }
    encoder
}

/// Embeds `texts` through the cache, with a progress bar while the encoder runs.
pub(super) fn embed(encoder: &mut CachedEncoder, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let pb = bar(0, "embed");
    let x = pollster::block_on(encoder.embed(texts, &mut |done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    }))?;
    pb.finish_and_clear();
    Ok(x)
}

/// The token vectors entering the first of the top `layers` layers, for each text, with a
/// progress bar: what fine-tuning starts every epoch from.
pub(super) fn token_states(
    embedder: &CachedEncoder,
    texts: &[&str],
    layers: usize,
) -> Result<Vec<TokenStates>> {
    let encoder = &embedder.encoder;
    let below = encoder
        .num_layers()
        .checked_sub(layers)
        .with_context(|| format!("the encoder has {} layers", encoder.num_layers()))?;
    let pb = bar(texts.len() as u64, "layers");
    let s = pollster::block_on(encoder.token_states(
        texts,
        below,
        &embedder.device,
        &mut |done, _| pb.set_position(done as u64),
    ))?;
    pb.finish_and_clear();
    Ok(s)
}

/// The encoder folder `args` names.
fn encoder_dir(args: &EncoderArgs, data_dir: &Path) -> PathBuf {
    args.encoder
        .clone()
        .unwrap_or_else(|| data_dir.join("../models/all-MiniLM-L6-v2"))
}

/// The encoder a bundle's classifier runs on (the base, with the bundle's fine-tuned layers if
/// it has any) and its cache; a base other than the one trained on is refused.
pub(super) fn open_for_bundle(
    args: &EncoderArgs,
    data_dir: &Path,
    device: DeviceChoice,
    bundle: &TextBundle,
) -> Result<CachedEncoder> {
    let dir = encoder_dir(args, data_dir);
    let device = device.init()?;
    let base = SentenceEncoder::load(&dir, &device)
        .with_context(|| format!("loading the sentence encoder from {}", dir.display()))?;
    let encoder = pollster::block_on(bundle.encoder(base, &device))
        .context("pass the encoder it was trained with (--encoder DIR)")?;
    let cache = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    Ok(warn_if_damaged(CachedEncoder::new(
        encoder,
        &cache,
        args.batch_tokens,
        &device,
    )?))
}

pub fn run(cmd: TextCommand, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    match cmd {
        TextCommand::Train(a) => train::cmd_train(a, device, data_dir),
        TextCommand::Eval(a) => eval::cmd_eval(a, device, data_dir),
        TextCommand::Predict(a) => eval::cmd_predict(a, device, data_dir),
        TextCommand::Cv(a) => cv::cmd_cv(a, device, data_dir),
        TextCommand::Explain(a) => explain::cmd_explain(a, device, data_dir),
        TextCommand::Probe(a) => explain::cmd_probe(a, device, data_dir),
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

impl RecipeArgs {
    pub(super) fn config(&self) -> Result<TextTrainConfig> {
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
            seeds: self.seeds,
            fine_tune: self.fine_tunes().then_some(FineTuneConfig {
                layers: self.fine_tune_layers,
                epochs: self.fine_tune_epochs,
                batch_size: self.fine_tune_batch_size,
                lr: self.fine_tune_lr,
                layer_decay: self.layer_decay,
                head_lr: self.fine_tune_head_lr,
                weight_decay: 0.01,
                warmup: self.warmup,
                patience: self.patience,
                token_rat: self.token_rat,
                token_eps: self.token_eps,
            }),
        })
    }

    /// Whether the recipe fine-tunes the encoder: asked for, or by default where it applies
    /// (one model on embeddings).
    fn fine_tunes(&self) -> bool {
        self.fine_tune
            || (!self.no_fine_tune && self.seeds == 1 && self.features == FeaturesArg::Embedding)
    }

    pub(super) fn augment_name(&self) -> String {
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
    pub(super) fn augmentation(
        &self,
        osha: &Path,
        class_names: &[String],
    ) -> Result<Option<TextDataset>> {
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
                Some(rampart_core::text::augment::parse_jsonl(
                    &bytes,
                    &path.display().to_string(),
                    class_names,
                )?)
            }
        })
    }
}
