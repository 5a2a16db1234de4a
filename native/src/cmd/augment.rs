//! `rampart augment`: ABEX abstract → expand augmentation of minority classes, with the
//! offline generator or an OpenAI-compatible chat server; writes JSON lines with provenance.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use rampart_core::text::augment::{AugmentConfig, Generator, OfflineGenerator, augment_with};
use rampart_core::text::data::load_osha;
use rampart_core::text::journal::{AugmentJournal, OpenMode, RunIdentity, data_fingerprint};

use crate::bar;
use crate::llm::{API_KEY_VAR, ChatGenerator, ChatSettings};

#[derive(Clone, Copy, ValueEnum)]
enum GeneratorArg {
    /// Extractive abstracts and recombination of same-class sentences; needs no model.
    Offline,
    /// An OpenAI-compatible chat-completions server (API key from $RAMPART_LLM_API_KEY).
    Chat,
}

#[derive(Args)]
pub struct AugmentArgs {
    #[arg(long, value_enum, default_value_t = GeneratorArg::Offline)]
    generator: GeneratorArg,
    /// Training reports in the OSHA format (default: <data-dir>/osha/train.json).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to write the generated reports (JSON lines).
    #[arg(long)]
    out: PathBuf,
    /// Augment this class (name or index; repeatable). Default: every class below --target.
    #[arg(long = "class")]
    classes: Vec<String>,
    /// Grow each augmented class to this many reports.
    #[arg(long, default_value_t = 300)]
    target: usize,
    /// At most this many new reports per class.
    #[arg(long, default_value_t = 1000)]
    max_per_class: usize,
    /// Abstracts combined into each new report.
    #[arg(long, default_value_t = 2)]
    abstracts_per_report: usize,
    /// Offline generator: sentences kept in an abstract.
    #[arg(long, default_value_t = 2)]
    keep: usize,
    /// Chat server base URL (…/v1).
    #[arg(long, default_value = "http://127.0.0.1:8080/v1")]
    base_url: String,
    /// Chat model name.
    #[arg(long, default_value = "default")]
    model: String,
    /// Abstract prompt template file ({class}, {report}).
    #[arg(long)]
    abstract_prompt: Option<PathBuf>,
    /// Expand prompt template file ({class}, {abstracts}).
    #[arg(long)]
    expand_prompt: Option<PathBuf>,
    /// Seconds per request.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Retries per request on transport errors, HTTP 429 and 5xx.
    #[arg(long, default_value_t = 3)]
    retries: usize,
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a JSON summary (per-class counts) instead of text.
    #[arg(long)]
    json: bool,
    /// Continue an interrupted run: the answers in `<out>.calls` are replayed, the reports
    /// already in --out are kept, and the run goes on from there.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Replace an existing --out (and its journal) instead of refusing.
    #[arg(long)]
    overwrite: bool,
}

pub fn run(a: AugmentArgs, data_dir: &Path) -> Result<()> {
    let data = a
        .data
        .clone()
        .unwrap_or_else(|| data_dir.join("osha/train.json"));
    let train = load_osha(&data)?;
    let classes = if a.classes.is_empty() {
        None
    } else {
        let mut v = Vec::new();
        for c in &a.classes {
            let i = match c.parse::<usize>() {
                Ok(i) if i < train.num_classes() => i,
                _ => train
                    .class_names
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(c.trim()))
                    .with_context(|| {
                        format!(
                            "unknown class \"{c}\" (one of: {})",
                            train.class_names.join(" | ")
                        )
                    })?,
            };
            v.push(i);
        }
        Some(v)
    };
    let config = AugmentConfig {
        classes,
        target: a.target,
        max_per_class: a.max_per_class,
        abstracts_per_report: a.abstracts_per_report,
        concurrency: a.concurrency,
        seed: a.seed,
        ..Default::default()
    };
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let read = |p: &Option<PathBuf>| -> Result<Option<String>> {
        p.as_ref()
            .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
            .transpose()
    };
    let generator: Box<dyn Generator> = match a.generator {
        GeneratorArg::Offline => Box::new(OfflineGenerator::new(&train, a.keep)?),
        GeneratorArg::Chat => {
            if std::env::var(API_KEY_VAR).is_err() {
                eprintln!("note: ${API_KEY_VAR} is not set; requests carry no API key");
            }
            Box::new(ChatGenerator::new(ChatSettings {
                base_url: a.base_url.clone(),
                model: a.model.clone(),
                abstract_prompt: read(&a.abstract_prompt)?,
                expand_prompt: read(&a.expand_prompt)?,
                timeout: Duration::from_secs_f64(a.timeout),
                retries: a.retries,
                temperature: a.temperature,
            })?)
        }
    };
    // What makes the run: a resume of anything else is refused. (Concurrency only changes
    // how many calls are in flight, not which are made, so it may differ.)
    let identity = RunIdentity {
        data: data_fingerprint(&train),
        generator: generator.name(),
        prompt_version: generator.prompt_version(),
        config: serde_json::json!({
            "classes": config.classes, "target": config.target,
            "max_per_class": config.max_per_class,
            "abstracts_per_report": config.abstracts_per_report,
            "rounds": config.rounds, "seed": config.seed, "keep": a.keep,
            "model": a.model, "temperature": a.temperature,
        }),
    };
    let mode = match (a.resume, a.overwrite) {
        (true, _) => OpenMode::Resume,
        (_, true) => OpenMode::Overwrite,
        _ => OpenMode::Fresh,
    };
    let journal = AugmentJournal::open(&a.out, &identity, mode)?;
    if journal.resumed_calls() > 0 && !a.json {
        eprintln!(
            "resuming: {} answers replayed, {} reports already in {}",
            journal.resumed_calls(),
            journal.resumed_reports(),
            a.out.display()
        );
    }
    let pb = bar(0, "generate");
    let run = augment_with(
        &train,
        generator.as_ref(),
        &config,
        &journal,
        &|done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        },
    );
    pb.finish_and_clear();
    let (generated, stats) = match run {
        Ok(r) => r,
        Err(e) => {
            journal.abandon();
            return Err(e.into());
        }
    };
    journal.finish(generated.len())?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "out": a.out, "generator": generator.name(),
                "prompt_version": generator.prompt_version(),
                "generated": generated.len(), "classes": stats,
            })
        );
    } else {
        for s in &stats {
            println!(
                "{:>5} originals, {:>5} generated, {:>4} duplicates dropped, {:>3} failed calls  {}",
                s.originals, s.generated, s.duplicates, s.failed_calls, s.class
            );
        }
        println!(
            "wrote {} reports ({}, {}) to {}",
            generated.len(),
            generator.name(),
            generator.prompt_version(),
            a.out.display()
        );
    }
    Ok(())
}
