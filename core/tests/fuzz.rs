//! Mutation fuzzing of every parser and file entry point: each target starts from valid
//! inputs (its seed corpus), mutates them (bit flips, overwritten and inserted bytes, boundary
//! integers, truncation, splicing) and must answer every input with a value or an error —
//! never a panic. A stable-toolchain loop rather than libFuzzer: nightly is not available
//! here, and the targets are cheap enough that plain random mutation covers them.
//!
//! `RAMPART_FUZZ_SECONDS` sets each target's time (default 1, for the test suite);
//! `bash bench/fuzz.sh MINUTES` runs every target for that long. An input that panics is
//! written to `core/tests/fuzz_corpus/<target>-<hash>.bin`; files there are replayed first,
//! as regression tests.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use rampart_core::bundle::{Bundle, BundleHeader, TextBundle, TextBundleHeader};
use rampart_core::data::{gunzip_if_needed, idx_from_bytes, parse_cifar};
use rampart_core::text::augment::parse_jsonl;
use rampart_core::text::classifier::MlpConfig;
use rampart_core::text::data::parse_osha;
use rampart_core::text::embed::EmbeddingCache;
use rampart_core::text::encoder::SentenceEncoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

fn budget() -> Duration {
    let s: f64 = std::env::var("RAMPART_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(s)
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus")
}

/// One mutation of `input`, drawing on `seeds` for splices.
fn mutate(input: &[u8], seeds: &[Vec<u8>], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = out.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] = rng.random();
            }
            2 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..=16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                out.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(64));
                out.drain(i..i + n);
            }
            4 if len >= 4 => {
                // A boundary integer over four or eight bytes: sizes and counts live there.
                let values: [u64; 6] = [0, 1, 0x7fff_ffff, 0xffff_ffff, u64::MAX, 1 << 40];
                let v = values[rng.random_range(0..values.len())];
                let w = if len >= 8 && rng.random() { 8 } else { 4 };
                let i = rng.random_range(0..=len - w);
                let bytes = if rng.random() {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                out[i..i + w].copy_from_slice(&bytes[8 - w..]);
            }
            5 if len > 0 => out.truncate(rng.random_range(0..len)),
            6 if !seeds.is_empty() => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let at = rng.random_range(0..=out.len());
                    out.truncate(at);
                    out.extend_from_slice(&other[from..]);
                }
            }
            _ if len > 1 => {
                let (i, j) = (rng.random_range(0..len), rng.random_range(0..len));
                out.swap(i, j);
            }
            _ => out.push(rng.random()),
        }
    }
    out
}

/// For sealed containers: re-seals the body so that mutations get past the checksum and
/// reach the parsers behind it.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 32 {
        bytes.truncate(bytes.len() - 32);
        let d = Sha256::digest(&bytes);
        bytes.extend_from_slice(&d);
    }
    bytes
}

thread_local! {
    static PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `target` on the regression corpus, the seeds, then mutations until the budget is
/// spent. Returns the number of inputs tried.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, sealed: bool, target: impl Fn(&[u8])) -> usize {
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(corpus_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}-"))
        })
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    inputs.extend(seeds.iter().cloned());
    // A panic that the library catches and turns into an error still counts: in wasm a
    // panic aborts, so every one must be prevented by a check before it.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = PANICKED.try_with(|p| p.set(true));
            previous(info);
        }));
    });
    let run = |input: &[u8]| {
        PANICKED.with(|p| p.set(false));
        let caught = catch_unwind(AssertUnwindSafe(|| target(input))).is_err();
        if caught || PANICKED.with(|p| p.get()) {
            let hash = format!("{:x}", Sha256::digest(input));
            let path = corpus_dir().join(format!("{name}-{}.bin", &hash[..16]));
            let _ = std::fs::create_dir_all(corpus_dir());
            let _ = std::fs::write(&path, input);
            panic!("{name} panicked on an input, saved to {}", path.display());
        }
    };
    for input in &inputs {
        run(input);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(Sha256::digest(name.as_bytes())[0] as u64);
    let start = Instant::now();
    let mut tried = inputs.len();
    while start.elapsed() < budget() {
        let base = &seeds[rng.random_range(0..seeds.len())];
        let mut input = mutate(base, &seeds, &mut rng);
        if sealed && rng.random_bool(0.8) {
            input = reseal(input);
        }
        run(&input);
        tried += 1;
    }
    eprintln!(
        "{name}: {tried} inputs in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    tried
}

fn image_bundle() -> Vec<u8> {
    let header = BundleHeader {
        model: tiny_config(3),
        class_names: vec!["a".into(), "b".into(), "c".into()],
        dataset: "synthetic".into(),
        recipe: serde_json::json!({"method": {"name": "standard"}}),
        metrics: serde_json::Value::Null,
        created_by: "fuzz".into(),
    };
    Bundle::new(&tiny_model(1), header).unwrap().to_bytes()
}

#[test]
fn fuzz_image_bundles() {
    let device = cpu();
    fuzz("bundle", vec![image_bundle()], true, |bytes| {
        if let Ok(b) = Bundle::from_bytes(bytes) {
            // Whatever parses must build (or refuse) without panicking.
            let _ = b.model(&device);
        }
    });
}

#[test]
fn fuzz_text_bundles() {
    let device = cpu();
    let mlp = MlpConfig {
        input: 8,
        hidden: vec![4],
        num_classes: 3,
        dropout: 0.1,
    };
    let header = TextBundleHeader {
        mlp: mlp.clone(),
        class_names: vec!["a".into(), "b".into(), "c".into()],
        encoder: "test".into(),
        encoder_fingerprint: "0".repeat(64),
        recipe: serde_json::Value::Null,
        metrics: serde_json::Value::Null,
        created_by: "fuzz".into(),
        fine_tuned: None,
    };
    let seed = TextBundle::new(&mlp.init(&device).unwrap(), header)
        .unwrap()
        .to_bytes();
    fuzz("text-bundle", vec![seed], true, |bytes| {
        if let Ok(b) = TextBundle::from_bytes(bytes) {
            let _ = b.model(&device);
        }
    });
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend((0..n * rows * cols).map(|i| (i * 7) as u8));
    b
}

fn idx_labels(n: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend_from_slice(&n.to_be_bytes());
    b.extend((0..n).map(|i| (i % 10) as u8));
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn fuzz_idx_files() {
    let names: Vec<String> = (0..10).map(|k| k.to_string()).collect();
    let images = idx_images(3, 4, 4);
    let labels = idx_labels(3);
    // One input holds both files: the first byte says where the split is.
    let pair = |i: &[u8], l: &[u8]| {
        let mut b = vec![i.len().min(255) as u8];
        b.extend_from_slice(i);
        b.extend_from_slice(l);
        b
    };
    let seeds = vec![
        pair(&images, &labels),
        pair(&gzip(&images), &gzip(&labels)),
        pair(&idx_images(1, 28, 28)[..200], &idx_labels(1)),
    ];
    fuzz("idx", seeds, false, |bytes| {
        let Some((&cut, rest)) = bytes.split_first() else {
            return;
        };
        let cut = (cut as usize).min(rest.len());
        let (i, l) = rest.split_at(cut);
        let _ = idx_from_bytes(i.to_vec(), l.to_vec(), names.clone(), "fuzz");
    });
}

#[test]
fn fuzz_gzip() {
    let seeds = vec![
        gzip(b"hello hello hello"),
        gzip(&idx_labels(50)),
        vec![0x1f, 0x8b],
    ];
    fuzz("gzip", seeds, false, |bytes| {
        let _ = gunzip_if_needed(bytes.to_vec(), "fuzz");
    });
}

#[test]
fn fuzz_cifar_records() {
    let record: Vec<u8> = std::iter::once(3u8)
        .chain((0..3072).map(|i| (i % 251) as u8))
        .collect();
    let seeds = vec![record.clone(), [record.clone(), record].concat()];
    fuzz("cifar", seeds, false, |bytes| {
        let _ = parse_cifar(bytes, "fuzz");
    });
}

fn osha_seed() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!([
        {"id": 1, "title": "Employee falls from ladder", "summary": "An  EMPLOYEE fell.", "gold": "FALLS,SLIPS,TRIPS"},
        {"idx": "2", "title": "Burn", "summary": "A fire started.", "gold": "FIRES AND EXPLOSIONS"},
        {"id": "355-aug-5", "title": "A worker was struck by a beam.", "summary": "", "gold": "CONTACT WITH OBJECTS AND EQUIPMENT"}
    ]))
    .unwrap()
}

#[test]
fn fuzz_osha_json() {
    fuzz("osha", vec![osha_seed(), b"[]".to_vec()], false, |bytes| {
        let _ = parse_osha(bytes, "fuzz");
    });
}

#[test]
fn fuzz_augmentation_jsonl() {
    let classes = parse_osha(&osha_seed(), "seed").unwrap().class_names;
    let line = serde_json::json!({
        "text": "A worker fell from a roof.", "label": "FALLS,SLIPS,TRIPS", "sources": ["1"],
        "generator": "offline", "prompt_version": "v1", "abstracts": ["fell"]
    });
    let seed = format!("{line}\n{line}\n").into_bytes();
    fuzz("jsonl", vec![seed], false, |bytes| {
        let _ = parse_jsonl(bytes, "fuzz", &classes);
    });
}

#[test]
fn fuzz_embedding_cache() {
    let dir = tempfile::tempdir().unwrap();
    let fingerprint = "f".repeat(64);
    let dim = 4;
    let mut cache = EmbeddingCache::open(dir.path(), &fingerprint, dim).unwrap();
    cache.insert("a report", vec![0.5; dim]);
    cache.insert("another", vec![-0.5; dim]);
    cache.save().unwrap();
    let path = cache.path().to_path_buf();
    let seed = std::fs::read(&path).unwrap();
    fuzz("embedding-cache", vec![seed], false, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        if let Ok(c) = EmbeddingCache::open(dir.path(), &fingerprint, dim)
            && let Some(v) = c.get("a report")
        {
            assert_eq!(v.len(), dim, "a cached vector of the wrong width");
        }
    });
}

#[test]
fn fuzz_tokenizer_input() {
    // Needs the MiniLM files; without them there is no tokenizer to run.
    let dir = rampart_core::data::resolve_data_dir(None).join("../models/all-MiniLM-L6-v2");
    if !dir.join("tokenizer.json").exists() {
        eprintln!("skip: no MiniLM files in {}", dir.display());
        return;
    }
    let encoder = SentenceEncoder::load(&dir, &cpu()).expect("the MiniLM encoder loads");
    let seeds = vec![
        b"An employee fell from a ladder.".to_vec(),
        "Caf\u{e9} \u{1F525} \u{202E}rtl \u{0}nul \u{65e5}\u{672c}\u{8a9e}"
            .as_bytes()
            .to_vec(),
        Vec::new(),
        "word ".repeat(200_000).into_bytes(),
    ];
    fuzz("tokenizer", seeds, false, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(p) = encoder.pieces(&text) {
            assert_eq!(p.ids.len(), p.offsets.len());
        }
    });
}

#[test]
fn fuzz_augment_journal() {
    use rampart_core::text::journal::{AugmentJournal, OpenMode, RunIdentity, calls_path};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen.jsonl");
    let identity = RunIdentity {
        data: "d".repeat(64),
        generator: "offline".into(),
        prompt_version: "v1".into(),
        config: serde_json::json!({"seed": 0}),
    };
    let header = serde_json::to_string(&identity).unwrap();
    let call = serde_json::json!({"key": "abstract\tFIRES\t1", "answer": "vapors ignited"});
    let report = serde_json::json!({
        "id": "1-gen-0", "text": "A fire.", "label": "FIRES", "sources": ["1"],
        "generator": "offline", "prompt_version": "v1", "abstracts": ["fire"]
    });
    // One input is both files: the journal, a NUL, the output.
    let seed = format!("{header}\n{call}\n{call}\n\0{report}\n{report}\n").into_bytes();
    fuzz("augment-journal", vec![seed], false, |bytes| {
        let cut = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::fs::write(calls_path(&out), &bytes[..cut]).unwrap();
        std::fs::write(&out, bytes.get(cut + 1..).unwrap_or_default()).unwrap();
        if let Ok(j) = AugmentJournal::open(&out, &identity, OpenMode::Resume) {
            let _ = j.resumed_reports();
        }
    });
}

#[test]
fn fuzz_text_checkpoints() {
    use rampart_core::text::checkpoint::TextCheckpointOptions;
    use rampart_core::text::classifier::{TextLoss, TextTrainConfig, train_mlp_resumable};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.ckpt");
    let x: Vec<Vec<f32>> = (0..6)
        .map(|i| vec![i as f32 / 6.0, 1.0 - i as f32 / 6.0])
        .collect();
    let y = vec![0, 1, 0, 1, 0, 1];
    let config = TextTrainConfig {
        hidden: vec![3],
        dropout: 0.0,
        loss: TextLoss::CrossEntropy,
        rat: None,
        epochs: 2,
        batch_size: 3,
        lr: 1e-2,
        weight_decay: 0.0,
        seed: 0,
        seeds: 1,
        fine_tune: None,
    };
    let options = |stop| TextCheckpointOptions {
        path: path.clone(),
        resume: true,
        stop_after_epochs: stop,
    };
    train_mlp_resumable(
        &x,
        &y,
        2,
        &config,
        &cpu(),
        Some(&options(Some(1))),
        &mut |_| {},
    )
    .unwrap();
    let seed = std::fs::read(&path).unwrap();
    fuzz("text-checkpoint", vec![seed], true, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let _ = train_mlp_resumable(
            &x,
            &y,
            2,
            &config,
            &cpu(),
            Some(&options(None)),
            &mut |_| {},
        );
    });
}
