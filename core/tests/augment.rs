//! The ABEX augmentation pipeline: the offline generator's abstracts and expansions are made of
//! the class's own sentences; the pipeline reaches its target, drops duplicates (of originals
//! and of each other), records provenance, counts and tolerates failed calls, keeps to its
//! concurrency limit, and its JSON lines read back as a dataset.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rampart_core::Error;
use rampart_core::error::Result;
use rampart_core::text::augment::{
    AugmentConfig, Generated, Generator, Journal, OfflineGenerator, augment, augment_with,
    dedup_key, parse_jsonl, to_jsonl,
};
use rampart_core::text::data::{TextDataset, parse_osha};
use rampart_core::text::journal::{
    AugmentJournal, OpenMode, RunIdentity, calls_path, data_fingerprint,
};

fn train() -> TextDataset {
    let mut rows = Vec::new();
    let falls = [
        "Worker falls from ladder. He was painting the wall. The ladder slipped on the wet floor.",
        "Employee fell through a skylight. The roof had no guardrail. He was killed by the fall.",
        "A roofer slipped from the scaffold. He fractured his leg. The scaffold lacked planks.",
        "Worker tripped over a hose. She broke her wrist. The hose crossed the walkway.",
    ];
    let fires = [
        "A tank exploded during welding. He was painting the wall. Vapors ignited. Two workers were burned.",
        "Fire broke out in the paint booth. Solvent vapors ignited. The employee was burned.",
    ];
    for (i, t) in falls.iter().enumerate() {
        rows.push(
            serde_json::json!({"id": i, "title": t, "summary": "", "gold": "FALLS,SLIPS,TRIPS"}),
        );
    }
    for (i, t) in fires.iter().enumerate() {
        rows.push(serde_json::json!({"id": 100 + i, "title": t, "summary": "", "gold": "FIRES AND EXPLOSIONS"}));
    }
    parse_osha(serde_json::to_string(&rows).unwrap().as_bytes(), "train").unwrap()
}

fn sentences_of(text: &str) -> Vec<String> {
    text.split_inclusive(". ")
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
fn offline_abstracts_and_expansions_use_the_class_sentences() {
    let t = train();
    let g = OfflineGenerator::new(&t, 2).unwrap();
    let report = &t.records[4].text;
    let a = g.abstract_report(report, "FIRES AND EXPLOSIONS").unwrap();
    let own = sentences_of(report);
    let kept = sentences_of(&a);
    assert_eq!(kept.len(), 2);
    // A subsequence of the report's sentences, in order.
    let mut at = 0;
    for s in &kept {
        let s = s.trim_end_matches(' ');
        at += own[at..]
            .iter()
            .position(|o| o.trim_end_matches(' ') == s)
            .unwrap_or_else(|| panic!("{s} is not a later sentence of {report}"))
            + 1;
    }
    // The sentence made of words typical of the other class is left out.
    assert!(!a.contains("painting"), "{a}");
    let x = g
        .expand(&[&a, "Two workers were burned."], "FIRES AND EXPLOSIONS", 7)
        .unwrap();
    assert_eq!(
        x,
        g.expand(&[&a, "Two workers were burned."], "FIRES AND EXPLOSIONS", 7)
            .unwrap()
    );
    assert!(x.starts_with(&kept[0]));
    assert!(x.contains("Two workers were burned."));
    assert!(g.expand(&[], "x", 0).is_err());
    assert!(OfflineGenerator::new(&t, 0).is_err());
}

#[test]
fn pipeline_reaches_target_without_duplicates_and_with_provenance() {
    let t = train();
    let g = OfflineGenerator::new(&t, 2).unwrap();
    let config = AugmentConfig {
        target: 12,
        concurrency: 3,
        ..Default::default()
    };
    let (out, stats) = augment(&t, &g, &config, &|_, _| {}).unwrap();
    assert_eq!(stats.len(), 2, "both classes are below the target");
    let mut keys: std::collections::HashSet<String> =
        t.records.iter().map(|r| dedup_key(&r.text)).collect();
    for r in &out {
        assert!(keys.insert(dedup_key(&r.text)), "duplicate: {}", r.text);
        assert_eq!(r.generator, "offline-extractive(keep=2)");
        assert_eq!(r.prompt_version, "offline-v1");
        assert_eq!(r.sources.len(), r.abstracts.len());
        let class = t.class_names.iter().position(|c| *c == r.label).unwrap();
        for s in &r.sources {
            let src = t.records.iter().find(|x| x.id == *s).unwrap();
            assert_eq!(src.label, class, "a source from another class");
        }
    }
    for s in &stats {
        assert!(s.originals + s.generated <= 12);
        assert!(s.generated > 0);
    }
    // Two fire reports give few distinct recombinations: duplicates are dropped, not kept.
    let fires = stats
        .iter()
        .find(|s| s.class == "FIRES AND EXPLOSIONS")
        .unwrap();
    assert!(fires.duplicates > 0 || fires.generated == 10);
    // JSON lines read back with the sources.
    let back = parse_jsonl(to_jsonl(&out).as_bytes(), "gen.jsonl", &t.class_names).unwrap();
    assert_eq!(back.len(), out.len());
    assert_eq!(back.records[0].sources, out[0].sources);
    // Only the chosen class, and max_per_class.
    let only = AugmentConfig {
        classes: Some(vec![4]),
        target: 100,
        max_per_class: 3,
        ..Default::default()
    };
    let (out, stats) = augment(&t, &g, &only, &|_, _| {}).unwrap();
    assert_eq!(stats.len(), 1);
    assert!(out.len() <= 3 && out.iter().all(|r| r.label == "FIRES AND EXPLOSIONS"));
}

#[test]
fn bad_jsonl_names_the_line() {
    let t = train();
    let err = parse_jsonl(b"\n{\"oops\": 1}\n", "gen.jsonl", &t.class_names).unwrap_err();
    assert!(
        matches!(&err, Error::BadRecord { record, .. } if record == "line 2"),
        "{err}"
    );
    let line = r#"{"id":"a","text":"x","label":"NOPE","sources":[],"generator":"g","prompt_version":"v","abstracts":[]}"#;
    let err = parse_jsonl(line.as_bytes(), "gen.jsonl", &t.class_names).unwrap_err();
    assert!(err.to_string().contains("unknown class"), "{err}");
    assert!(parse_jsonl(b"", "gen.jsonl", &t.class_names).is_err());
}

/// Fails every third call, answers duplicates sometimes, and records the calls in flight.
struct Flaky {
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    most: AtomicUsize,
    always_fail: bool,
    seen: Mutex<Vec<u64>>,
}

impl Flaky {
    fn new(always_fail: bool) -> Self {
        Self {
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            always_fail,
            seen: Mutex::new(Vec::new()),
        }
    }
    fn call(&self, out: String) -> Result<String> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(5));
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.always_fail || n % 3 == 2 {
            return Err(Error::invalid("flaky", "server error"));
        }
        Ok(out)
    }
}

impl Generator for Flaky {
    fn name(&self) -> String {
        "flaky".into()
    }
    fn prompt_version(&self) -> String {
        "t1".into()
    }
    fn abstract_report(&self, report: &str, _: &str) -> Result<String> {
        self.call(report.chars().take(20).collect())
    }
    fn expand(&self, _: &[&str], class: &str, seed: u64) -> Result<String> {
        self.seen.lock().unwrap().push(seed);
        // One answer in four repeats an earlier one.
        let k = if seed.is_multiple_of(4) { 0 } else { seed };
        self.call(format!("new {class} report {k}"))
    }
}

#[test]
fn failed_calls_and_duplicates_are_counted_and_concurrency_is_bounded() {
    let t = train();
    let g = Flaky::new(false);
    let config = AugmentConfig {
        classes: Some(vec![0]),
        target: 24,
        concurrency: 3,
        rounds: 5,
        ..Default::default()
    };
    let (out, stats) = augment(&t, &g, &config, &|_, _| {}).unwrap();
    let s = &stats[0];
    assert!(s.failed_calls > 0 && s.duplicates > 0, "{s:?}");
    assert_eq!(out.len(), s.generated);
    assert!(s.generated <= 20);
    assert!(g.most.load(Ordering::SeqCst) <= 3);
    assert!(g.most.load(Ordering::SeqCst) >= 2, "calls never overlapped");
    // Every call failing is an error, not an empty result.
    let dead = Flaky::new(true);
    let err = augment(&t, &dead, &config, &|_, _| {}).unwrap_err();
    assert!(err.to_string().contains("server error"), "{err}");
    // Bad settings.
    let bad = AugmentConfig {
        concurrency: 0,
        ..Default::default()
    };
    assert!(augment(&t, &g, &bad, &|_, _| {}).is_err());
    let bad = AugmentConfig {
        classes: Some(vec![9]),
        ..Default::default()
    };
    assert!(augment(&t, &g, &bad, &|_, _| {}).is_err());
}

/// A generator that counts its calls, answering like the offline one.
struct Counting {
    inner: OfflineGenerator,
    calls: AtomicUsize,
}

impl Generator for Counting {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn prompt_version(&self) -> String {
        self.inner.prompt_version()
    }
    fn abstract_report(&self, report: &str, class: &str) -> Result<String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.abstract_report(report, class)
    }
    fn expand(&self, abstracts: &[&str], class: &str, seed: u64) -> Result<String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.expand(abstracts, class, seed)
    }
}

/// A journal that dies (returns an error, as a killed process stops) once `limit` reports
/// have been accepted.
struct DiesAfter<'a> {
    inner: &'a AugmentJournal,
    limit: usize,
}

impl Journal for DiesAfter<'_> {
    fn cached(&self, key: &str) -> Option<String> {
        self.inner.cached(key)
    }
    fn called(&self, key: &str, answer: &str) -> Result<()> {
        self.inner.called(key, answer)
    }
    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
    fn accepted(&self, index: usize, report: &Generated) -> Result<()> {
        if index >= self.limit {
            return Err(Error::invalid("test", "killed"));
        }
        self.inner.accepted(index, report)
    }
}

#[test]
fn an_interrupted_augmentation_resumes_with_no_duplicate_and_no_gap() {
    let t = train();
    let config = AugmentConfig {
        target: 8,
        concurrency: 3,
        seed: 4,
        ..Default::default()
    };
    let generator = || Counting {
        inner: OfflineGenerator::new(&t, 2).unwrap(),
        calls: AtomicUsize::new(0),
    };
    let identity = RunIdentity {
        data: data_fingerprint(&t),
        generator: "offline".into(),
        prompt_version: "offline-v1".into(),
        config: serde_json::to_value(&config).unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let whole_path = dir.path().join("whole.jsonl");
    let whole_journal = AugmentJournal::open(&whole_path, &identity, OpenMode::Fresh).unwrap();
    let g = generator();
    let (whole, _) = augment_with(&t, &g, &config, &whole_journal, &|_, _| {}).unwrap();
    whole_journal.finish(whole.len()).unwrap();
    let all_calls = g.calls.load(Ordering::Relaxed);
    assert_eq!(
        std::fs::read_to_string(&whole_path).unwrap(),
        to_jsonl(&whole)
    );
    assert!(
        !calls_path(&whole_path).exists(),
        "the journal outlived a finished run"
    );
    assert!(whole.len() >= 4, "{} reports", whole.len());

    // Killed after 2 reports, with a line of each file cut short by the kill.
    let out = dir.path().join("gen.jsonl");
    let j = AugmentJournal::open(&out, &identity, OpenMode::Fresh).unwrap();
    let dies = DiesAfter {
        inner: &j,
        limit: 2,
    };
    assert!(augment_with(&t, &generator(), &config, &dies, &|_, _| {}).is_err());
    drop(j);
    for path in [out.clone(), calls_path(&out)] {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        std::io::Write::write_all(&mut f, b"{\"id\":\"half").unwrap();
    }
    // A fresh start is refused; another recipe's resume is refused, naming the difference.
    assert!(AugmentJournal::open(&out, &identity, OpenMode::Fresh).is_err());
    let other = RunIdentity {
        config: serde_json::to_value(AugmentConfig {
            seed: 5,
            ..config.clone()
        })
        .unwrap(),
        ..identity.clone()
    };
    match AugmentJournal::open(&out, &other, OpenMode::Resume) {
        Err(e) => assert!(e.to_string().contains("differs in: config"), "{e}"),
        Ok(_) => panic!("a journal of another run was accepted"),
    }

    let j = AugmentJournal::open(&out, &identity, OpenMode::Resume).unwrap();
    assert_eq!(j.resumed_reports(), 2);
    let g = generator();
    let (resumed, _) = augment_with(&t, &g, &config, &j, &|_, _| {}).unwrap();
    j.finish(resumed.len()).unwrap();
    assert_eq!(resumed, whole);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&whole_path).unwrap(),
        "the resumed output is not the uninterrupted one"
    );
    // The answers of the first attempt were replayed, not asked again.
    assert!(g.calls.load(Ordering::Relaxed) < all_calls);
}
