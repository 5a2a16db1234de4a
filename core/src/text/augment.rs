//! ABEX augmentation of minority classes: an *abstract* step distils each report of a class to
//! its label-critical core, an *expand* step writes new reports of the class from abstracts.
//! Both steps are a [`Generator`]; [`OfflineGenerator`] needs no model (extractive abstracts,
//! recombination of same-class content), an LLM client lives at the CLI edge. The pipeline
//! records provenance and drops duplicates (of the originals and of each other).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::text::data::{TextDataset, TextRecord, normalize_whitespace};

/// Writes text for the two ABEX steps. Implementations must be usable from several threads
/// (the pipeline runs `concurrency` calls at once).
pub trait Generator: Send + Sync {
    /// Identity recorded with every generated report.
    fn name(&self) -> String;
    /// Version of the prompts (or rules) used, recorded with every generated report.
    fn prompt_version(&self) -> String;
    /// Distils one report of class `class` to its label-critical core.
    fn abstract_report(&self, report: &str, class: &str) -> Result<String>;
    /// Writes one new report of class `class` from `abstracts` of real ones; `seed` varies it.
    fn expand(&self, abstracts: &[&str], class: &str, seed: u64) -> Result<String>;
}

/// Settings of [`augment`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Classes (indices) to augment; `None`: every class with fewer than `target` reports.
    pub classes: Option<Vec<usize>>,
    /// Grow each augmented class to this many reports (originals + generated).
    pub target: usize,
    /// At most this many new reports per class.
    pub max_per_class: usize,
    /// Abstracts given to each expansion (the first is the main source).
    pub abstracts_per_report: usize,
    /// Generator calls in flight at once.
    pub concurrency: usize,
    /// Expansion rounds to make up for duplicates and failed calls.
    pub rounds: usize,
    pub seed: u64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            classes: None,
            target: 300,
            max_per_class: 1000,
            abstracts_per_report: 2,
            concurrency: 4,
            rounds: 3,
            seed: 0,
        }
    }
}

impl AugmentConfig {
    pub fn validate(&self, num_classes: usize) -> Result<()> {
        let bad = |m: String| Err(Error::invalid("augment config", m));
        if self.abstracts_per_report == 0 {
            return bad("abstracts_per_report must be ≥ 1".into());
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return bad(format!(
                "concurrency must be in 1..=64, got {}",
                self.concurrency
            ));
        }
        if self.rounds == 0 {
            return bad("rounds must be ≥ 1".into());
        }
        if let Some(c) = self.classes.iter().flatten().find(|&&c| c >= num_classes) {
            return bad(format!("class {c} is out of range ({num_classes} classes)"));
        }
        Ok(())
    }
}

/// One generated report with its provenance (a line of the JSONL output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    pub id: String,
    pub text: String,
    pub label: String,
    /// Ids of the reports whose abstracts it was expanded from (the first is the main one).
    pub sources: Vec<String>,
    pub generator: String,
    pub prompt_version: String,
    pub abstracts: Vec<String>,
}

/// What the pipeline did, per class.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AugmentStats {
    pub class: String,
    pub originals: usize,
    pub generated: usize,
    pub duplicates: usize,
    pub failed_calls: usize,
}

/// Key under which two texts count as duplicates: lower-case alphanumeric words.
pub fn dedup_key(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `f` on every job with `concurrency` threads; results in job order.
fn parallel<J: Sync, T: Send>(
    jobs: &[J],
    concurrency: usize,
    f: impl Fn(&J) -> T + Sync,
    progress: &(dyn Fn() + Sync),
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<T>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..concurrency.min(jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs.len() {
                        break;
                    }
                    let r = f(&jobs[i]);
                    out.lock().expect("no worker panicked")[i] = Some(r);
                    progress();
                }
            });
        }
    });
    out.into_inner()
        .expect("no worker panicked")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// Where an augmentation run keeps its work as it goes, so that an interrupted run loses
/// nothing: every generator call's answer (replayed instead of repeated on resume) and every
/// accepted report, in order. See [`super::journal::AugmentJournal`] for the files.
pub trait Journal: Sync {
    /// The answer an earlier run got for the call `key`.
    fn cached(&self, key: &str) -> Option<String>;
    /// Records the answer to the call `key`.
    fn called(&self, key: &str, answer: &str) -> Result<()>;
    /// A batch of calls is over: what was recorded must survive before reports built from it
    /// are accepted.
    fn sync(&self) -> Result<()>;
    /// Report number `index` (from 0, in the order of the output) is accepted.
    fn accepted(&self, index: usize, report: &Generated) -> Result<()>;
}

/// A journal that keeps nothing.
pub struct NoJournal;

impl Journal for NoJournal {
    fn cached(&self, _: &str) -> Option<String> {
        None
    }
    fn called(&self, _: &str, _: &str) -> Result<()> {
        Ok(())
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
    fn accepted(&self, _: usize, _: &Generated) -> Result<()> {
        Ok(())
    }
}

/// Abstracts every report of the chosen minority classes and expands them into new reports
/// until each class reaches `config.target` (or `max_per_class` new ones). Failed generator
/// calls are counted and skipped; if every call of a class fails, the first error is returned.
/// `progress(done, total)` counts generator calls.
pub fn augment(
    train: &TextDataset,
    generator: &dyn Generator,
    config: &AugmentConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(Vec<Generated>, Vec<AugmentStats>)> {
    augment_with(train, generator, config, &NoJournal, progress)
}

/// [`augment`], keeping its work in `journal` as it goes. The calls and their order depend
/// only on the data, the config and the answers, so a run that replays an interrupted run's
/// answers from its journal accepts the same reports in the same order.
pub fn augment_with(
    train: &TextDataset,
    generator: &dyn Generator,
    config: &AugmentConfig,
    journal: &dyn Journal,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(Vec<Generated>, Vec<AugmentStats>)> {
    config.validate(train.num_classes())?;
    // A call's answer: the journal's if an earlier run got one, else the generator's (then
    // recorded). Failed calls are not recorded: a resumed run tries them again.
    let call = |key: String, run: &dyn Fn() -> Result<String>| -> Result<String> {
        if let Some(answer) = journal.cached(&key) {
            return Ok(answer);
        }
        let answer = run()?;
        journal.called(&key, &answer)?;
        Ok(answer)
    };
    let counts = train.class_counts();
    let classes: Vec<usize> = match &config.classes {
        Some(c) => c.clone(),
        None => (0..train.num_classes())
            .filter(|&c| counts[c] > 0 && counts[c] < config.target)
            .collect(),
    };
    let mut seen: HashSet<String> = train.records.iter().map(|r| dedup_key(&r.text)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let done = AtomicUsize::new(0);
    let total = AtomicUsize::new(0);
    let tick = || {
        progress(
            done.fetch_add(1, Ordering::Relaxed) + 1,
            total.load(Ordering::Relaxed),
        )
    };
    let mut out = Vec::new();
    let mut stats = Vec::new();
    for &class in &classes {
        let name = &train.class_names[class];
        let members: Vec<&TextRecord> = train.records.iter().filter(|r| r.label == class).collect();
        let mut st = AugmentStats {
            class: name.clone(),
            originals: members.len(),
            ..Default::default()
        };
        let wanted = config
            .target
            .saturating_sub(members.len())
            .min(config.max_per_class);
        if members.is_empty() || wanted == 0 {
            stats.push(st);
            continue;
        }
        total.fetch_add(members.len() + wanted, Ordering::Relaxed);
        let abstracts = parallel(
            &members,
            config.concurrency,
            |r| {
                call(format!("abstract\t{name}\t{}", r.id), &|| {
                    generator.abstract_report(&r.text, name)
                })
            },
            &tick,
        );
        journal.sync()?;
        let mut first_error = None;
        let mut usable: Vec<(&TextRecord, String)> = Vec::new();
        for (r, a) in members.iter().zip(abstracts) {
            match a {
                Ok(a) if !a.trim().is_empty() => usable.push((r, normalize_whitespace(&a))),
                Ok(_) => st.failed_calls += 1,
                Err(e) => {
                    st.failed_calls += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if usable.is_empty() {
            return Err(first_error.unwrap_or_else(|| {
                Error::invalid(
                    "augment",
                    format!("every abstract of {name} came back empty"),
                )
            }));
        }
        let mut made = 0;
        for round in 0..config.rounds {
            let need = wanted - made;
            if need == 0 {
                break;
            }
            if round > 0 {
                total.fetch_add(need, Ordering::Relaxed);
            }
            // Each job: a main abstract (cycling through all reports) plus others at random.
            let jobs: Vec<(Vec<usize>, u64)> = (0..need)
                .map(|j| {
                    let main = (made + j) % usable.len();
                    let mut picks = vec![main];
                    let mut others: Vec<usize> = (0..usable.len()).filter(|&i| i != main).collect();
                    others.shuffle(&mut rng);
                    picks.extend(others.into_iter().take(config.abstracts_per_report - 1));
                    (picks, rng.random())
                })
                .collect();
            let texts = parallel(
                &jobs,
                config.concurrency,
                |(picks, seed)| {
                    let a: Vec<&str> = picks.iter().map(|&i| usable[i].1.as_str()).collect();
                    let ids: Vec<&str> = picks.iter().map(|&i| usable[i].0.id.as_str()).collect();
                    call(
                        format!("expand\t{name}\t{seed}\t{}", ids.join(",")),
                        &|| generator.expand(&a, name, *seed),
                    )
                },
                &tick,
            );
            journal.sync()?;
            for ((picks, _), text) in jobs.iter().zip(texts) {
                let text = match text {
                    Ok(t) => normalize_whitespace(&t),
                    Err(e) => {
                        st.failed_calls += 1;
                        first_error.get_or_insert(e);
                        continue;
                    }
                };
                if text.is_empty() || !seen.insert(dedup_key(&text)) {
                    st.duplicates += 1;
                    continue;
                }
                let main = usable[picks[0]].0;
                let report = Generated {
                    id: format!("{}-gen-{}", main.id, made),
                    text,
                    label: name.clone(),
                    sources: picks.iter().map(|&i| usable[i].0.id.clone()).collect(),
                    generator: generator.name(),
                    prompt_version: generator.prompt_version(),
                    abstracts: picks.iter().map(|&i| usable[i].1.clone()).collect(),
                };
                journal.accepted(out.len(), &report)?;
                out.push(report);
                made += 1;
            }
        }
        if made == 0
            && let Some(e) = first_error
        {
            return Err(e);
        }
        st.generated = made;
        stats.push(st);
    }
    Ok((out, stats))
}

/// The generated reports as JSON lines.
pub fn to_jsonl(generated: &[Generated]) -> String {
    generated
        .iter()
        .map(|g| serde_json::to_string(g).expect("generated reports serialise") + "\n")
        .collect()
}

/// Reads generated reports (JSON lines) as a dataset over `class_names`; each record's
/// `sources` say which original reports it must not be separated from in cross-validation.
pub fn parse_jsonl(bytes: &[u8], what: &str, class_names: &[String]) -> Result<TextDataset> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::invalid(what, "not UTF-8 text"))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| Error::BadRecord {
            what: what.into(),
            record: format!("line {}", i + 1),
            reason,
        };
        let g: Generated =
            serde_json::from_str(line).map_err(|e| bad(format!("not a generated report: {e}")))?;
        let label = class_names
            .iter()
            .position(|c| *c == g.label)
            .ok_or_else(|| bad(format!("unknown class \"{}\"", g.label)))?;
        let text = normalize_whitespace(&g.text);
        if text.is_empty() {
            return Err(bad("empty text".into()));
        }
        records.push(TextRecord {
            id: g.id,
            text,
            label,
            sources: g.sources,
        });
    }
    if records.is_empty() {
        return Err(Error::invalid(what, "no generated reports"));
    }
    Ok(TextDataset {
        records,
        class_names: class_names.to_vec(),
    })
}

/// Splits a report into sentences (at `.`, `!` or `?` followed by a space).
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        if matches!(bytes[i], b'.' | b'!' | b'?') && bytes.get(i + 1) == Some(&b' ') {
            let s = text[start..=i].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = i + 1;
        }
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| w.len() > 2)
        .map(str::to_lowercase)
}

/// A generator that needs no model. Abstract: the sentences of a report whose words are most
/// typical of its class (smoothed log-odds of the word in the class against the rest of the
/// training set), at most `keep` of them, in their original order. Expand: the main abstract
/// followed by one sentence drawn from each other abstract of the class, in a seeded order
/// after the first sentence.
pub struct OfflineGenerator {
    log_odds: HashMap<String, HashMap<String, f32>>,
    keep: usize,
}

impl OfflineGenerator {
    pub fn new(train: &TextDataset, keep: usize) -> Result<Self> {
        if keep == 0 {
            return Err(Error::invalid("offline generator", "keep must be ≥ 1"));
        }
        let k = train.num_classes();
        let mut per_class: Vec<HashMap<String, f32>> = vec![HashMap::new(); k];
        let mut all: HashMap<String, f32> = HashMap::new();
        for r in &train.records {
            // Document frequency: a word counts once per report.
            let unique: HashSet<String> = words(&r.text).collect();
            for w in unique {
                *per_class[r.label].entry(w.clone()).or_default() += 1.0;
                *all.entry(w).or_default() += 1.0;
            }
        }
        let counts = train.class_counts();
        let n = train.len() as f32;
        let mut log_odds = HashMap::new();
        for (c, words) in per_class.into_iter().enumerate() {
            let inside = counts[c] as f32;
            let outside = (n - inside).max(1.0);
            let scores = words
                .into_iter()
                .map(|(w, df)| {
                    let rest = all[&w] - df;
                    let p_in = (df + 0.5) / (inside + 1.0);
                    let p_out = (rest + 0.5) / (outside + 1.0);
                    (w, (p_in / p_out).ln())
                })
                .collect();
            log_odds.insert(train.class_names[c].clone(), scores);
        }
        Ok(Self { log_odds, keep })
    }

    fn score(&self, sentence: &str, class: &str) -> f32 {
        let table = self.log_odds.get(class);
        let (sum, n) = words(sentence).fold((0f32, 0usize), |(s, n), w| {
            let v = table.and_then(|t| t.get(&w)).copied().unwrap_or(0.0);
            (s + v.max(0.0), n + 1)
        });
        if n == 0 { 0.0 } else { sum / (n as f32).sqrt() }
    }
}

impl Generator for OfflineGenerator {
    fn name(&self) -> String {
        format!("offline-extractive(keep={})", self.keep)
    }

    fn prompt_version(&self) -> String {
        "offline-v1".into()
    }

    fn abstract_report(&self, report: &str, class: &str) -> Result<String> {
        let s = sentences(report);
        let mut ranked: Vec<usize> = (0..s.len()).collect();
        ranked.sort_by(|&a, &b| self.score(s[b], class).total_cmp(&self.score(s[a], class)));
        ranked.truncate(self.keep);
        ranked.sort_unstable();
        Ok(ranked.iter().map(|&i| s[i]).collect::<Vec<_>>().join(" "))
    }

    fn expand(&self, abstracts: &[&str], _class: &str, seed: u64) -> Result<String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let Some((main, others)) = abstracts.split_first() else {
            return Err(Error::invalid("expand", "no abstracts given"));
        };
        let mut parts: Vec<&str> = sentences(main);
        let mut extra: Vec<&str> = others
            .iter()
            .filter_map(|a| {
                let s = sentences(a);
                (!s.is_empty()).then(|| s[rng.random_range(0..s.len())])
            })
            .collect();
        if parts.len() > 1 {
            let mut tail = parts.split_off(1);
            tail.append(&mut extra);
            tail.shuffle(&mut rng);
            parts.extend(tail);
        } else {
            parts.append(&mut extra);
        }
        Ok(parts.join(" "))
    }
}
