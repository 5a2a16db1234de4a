//! `rampart text` end to end on a slice of the OSHA reports: train a small classifier, evaluate
//! it (--json fields), predict one report, and reject bad input with clear errors. Needs the
//! shared data and MiniLM folders (present in CI); skipped without them.

mod common;

use common::{data_dir, expect_failure, expect_ok, kill_after_checkpoints};
use std::path::{Path, PathBuf};
use std::process::Command;

fn rampart(args: &[&str], cache: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .args(["--cache-dir", cache.to_str().unwrap()])
        .env("RAMPART_DATA", data_dir())
        .output()
        .unwrap()
}

fn ok(args: &[&str], cache: &Path) -> String {
    expect_ok(args, rampart(args, cache))
}

fn fails_with(args: &[&str], cache: &Path, needle: &str) {
    expect_failure(args, rampart(args, cache), needle);
}

/// A temporary folder with an embedding cache path and a small validation file (the first 40
/// validation reports); `None` (the test is skipped) without the OSHA data or MiniLM.
fn setup() -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    let data = data_dir();
    if !data.join("osha/train.json").exists()
        || !data
            .join("../models/all-MiniLM-L6-v2/model.safetensors")
            .exists()
    {
        eprintln!("skipped: no OSHA data or MiniLM under {}", data.display());
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let val: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(data.join("osha/val.json")).unwrap())
            .unwrap();
    let small = dir.path().join("val40.json");
    std::fs::write(&small, serde_json::to_string(&val[..40]).unwrap()).unwrap();
    Some((dir, cache, small))
}

#[test]
fn text_train_eval_predict_and_bad_input() {
    let Some((dir, cache, small)) = setup() else {
        return;
    };
    let bundle = dir.path().join("osha.rampart-text");
    let b = bundle.to_str().unwrap();
    let s = small.to_str().unwrap();
    ok(
        &[
            "text",
            "train",
            "--no-fine-tune",
            "--augment",
            "none",
            "--limit",
            "300",
            "--epochs",
            "15",
            "--val",
            s,
            "--out",
            b,
        ],
        &cache,
    );
    let report: serde_json::Value = serde_json::from_str(&ok(
        &["text", "eval", "--bundle", b, "--data", s, "--json"],
        &cache,
    ))
    .unwrap();
    for key in ["accuracy", "macro_f1", "weighted_f1"] {
        let v = report[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(report["per_class"].as_array().unwrap().len(), 7);
    assert_eq!(report["samples"], 40);
    let header = rampart_core::bundle::TextBundle::load(&bundle)
        .unwrap()
        .header;
    assert!(header.fine_tuned.is_none(), "--no-fine-tune fine-tuned");
    // 300 reports of the three large classes already separate them well.
    assert!(report["accuracy"].as_f64().unwrap() > 0.6, "{report}");

    let p: serde_json::Value = serde_json::from_str(&ok(
        &[
            "text",
            "predict",
            "--bundle",
            b,
            "--json",
            "Employee fell 20 feet from a scaffold and was killed.",
        ],
        &cache,
    ))
    .unwrap();
    assert_eq!(p["predicted"], "FALLS,SLIPS,TRIPS", "{p}");
    let total: f64 = p["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["probability"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-4);

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"id": 9, "title": "x", "summary": "", "gold": "EARTHQUAKES"}]"#,
    )
    .unwrap();
    fails_with(
        &[
            "text",
            "eval",
            "--bundle",
            b,
            "--data",
            bad.to_str().unwrap(),
        ],
        &cache,
        "record #0 (id 9): unknown class \"EARTHQUAKES\"",
    );
    fails_with(&["text", "predict", "--bundle", b, "   "], &cache, "empty");
    std::fs::write(dir.path().join("junk.rampart-text"), b"not a bundle").unwrap();
    fails_with(
        &[
            "text",
            "eval",
            "--bundle",
            dir.path().join("junk.rampart-text").to_str().unwrap(),
            "--data",
            s,
        ],
        &cache,
        "text bundle",
    );
    fails_with(
        &[
            "text",
            "eval",
            "--bundle",
            b,
            "--data",
            s,
            "--encoder",
            "/nonexistent",
        ],
        &cache,
        "file not found",
    );
}

/// kill -9 at three random epochs of `text train`, `--resume` after each: the bundle scores
/// and predicts exactly as the uninterrupted run's; without --overwrite nothing is replaced.
#[test]
fn text_train_killed_three_times_resumes_exactly() {
    let Some((dir, cache, small)) = setup() else {
        return;
    };
    let epochs = 30;
    let args = |out: &Path| -> Vec<String> {
        [
            "text",
            "train",
            "--no-fine-tune",
            "--augment",
            "none",
            "--limit",
            "300",
            "--epochs",
            "30",
            "--val",
            small.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let strings = |v: &[String]| -> Vec<String> { v.to_vec() };
    let report = |json: &str| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        v.as_object_mut().unwrap().remove("timing");
        v
    };
    let whole = dir.path().join("whole.rampart-text");
    let a = strings(&args(&whole));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let expected = report(&ok(&a, &cache));

    let out = dir.path().join("parts.rampart-text");
    let ckpt = dir.path().join("parts.rampart-text.ckpt");
    let mut resume = args(&out);
    resume.push("--resume".into());
    let resume: Vec<&str> = resume.iter().map(String::as_str).collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill epochs from seed {seed}");
    let mut s = seed | 1;
    let mut points: Vec<usize> = (0..3)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            1 + (s % (epochs - 2)) as usize
        })
        .collect();
    points.sort_unstable();
    let mut killed = 0;
    let mut done_before = 0;
    for at in points {
        let child = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(&resume)
            .args(["--cache-dir", cache.to_str().unwrap()])
            .env("RAMPART_DATA", data_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Each checkpoint is one more epoch; kill once `at` epochs are done in all.
        let (was_killed, seen) =
            kill_after_checkpoints(child, &ckpt, at.saturating_sub(done_before));
        killed += usize::from(was_killed);
        done_before += seen;
    }
    assert!(killed >= 2, "the runs finished before they could be killed");
    assert!(!out.exists(), "a killed run wrote its bundle");
    assert_eq!(report(&ok(&resume, &cache)), expected);
    assert!(!ckpt.exists(), "the checkpoint outlived a finished run");
    let predict = |b: &Path| {
        ok(
            &[
                "text",
                "predict",
                "--bundle",
                b.to_str().unwrap(),
                "--json",
                "A worker fell from a roof.",
            ],
            &cache,
        )
    };
    assert_eq!(predict(&out), predict(&whole));
    // A second run does not replace the bundle.
    fails_with(&a, &cache, "pass --overwrite");
}

/// A seed ensemble stopped inside its first member and again inside its second, then resumed,
/// ends exactly as an uninterrupted run; its bundle holds the members side by side (hidden
/// 2 × 64) and no member checkpoint outlives the run.
#[test]
fn text_train_seed_ensemble_resumes_across_members() {
    let Some((dir, cache, small)) = setup() else {
        return;
    };
    let run = |out: &Path, extra: &[&str]| -> String {
        let mut a = vec![
            "text",
            "train",
            "--augment",
            "none",
            "--limit",
            "200",
            "--epochs",
            "4",
            "--hidden",
            "64",
            "--seeds",
            "2",
            "--val",
            small.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ];
        a.extend_from_slice(extra);
        ok(&a, &cache)
    };
    let report = |json: &str| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        v.as_object_mut().unwrap().remove("timing");
        v
    };
    let whole = dir.path().join("whole.rampart-text");
    let expected = report(&run(&whole, &[]));
    let out = dir.path().join("parts.rampart-text");
    let ckpt = dir.path().join("parts.rampart-text.ckpt");
    let member = dir.path().join("parts.rampart-text.ckpt.member1");
    // Member 0 stops after 3 of its 4 epochs.
    run(&out, &["--stop-after-epochs", "3"]);
    assert!(ckpt.exists() && !member.exists() && !out.exists());
    // Member 0 finishes; member 1 stops after 3 epochs.
    run(&out, &["--resume", "--stop-after-epochs", "3"]);
    assert!(member.exists() && !out.exists());
    assert_eq!(report(&run(&out, &["--resume"])), expected);
    assert!(
        !ckpt.exists() && !member.exists(),
        "a checkpoint outlived the run"
    );
    let bundle = rampart_core::bundle::TextBundle::load(&out).unwrap();
    assert_eq!(bundle.header.mlp.hidden, vec![128]);
    assert_eq!(bundle.header.recipe["seeds"], 2);
    // Fine-tuning is the default for one model only: an ensemble's encoder stays frozen.
    assert!(bundle.header.fine_tuned.is_none());
    // --overwrite starts afresh: an unfinished run's member checkpoints go with it.
    std::fs::remove_file(&out).unwrap();
    run(&out, &["--stop-after-epochs", "3"]);
    run(&out, &["--resume", "--stop-after-epochs", "2"]);
    assert!(member.exists());
    assert_eq!(report(&run(&out, &["--overwrite"])), expected);
    assert!(
        !ckpt.exists() && !member.exists(),
        "--overwrite left a checkpoint"
    );
}

/// Fine-tuning, the default (no `--fine-tune` here): stopped inside it and resumed, the run
/// ends exactly as an uninterrupted one; its bundle (version 2, one fine-tuned layer)
/// evaluates and predicts with the rebuilt encoder, to the metrics training reported; bad
/// settings are refused.
#[test]
fn text_train_fine_tune_resumes_and_its_bundle_evaluates() {
    let Some((dir, cache, small)) = setup() else {
        return;
    };
    let s = small.to_str().unwrap();
    let run = |out: &Path, extra: &[&str]| -> String {
        let mut a = vec![
            "text",
            "train",
            "--augment",
            "none",
            "--limit",
            "120",
            "--epochs",
            "2",
            "--hidden",
            "32",
            "--fine-tune-layers",
            "1",
            "--fine-tune-epochs",
            "3",
            "--patience",
            "0",
            "--val",
            s,
            "--out",
            out.to_str().unwrap(),
            "--json",
        ];
        a.extend_from_slice(extra);
        ok(&a, &cache)
    };
    let report = |json: &str| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        v.as_object_mut().unwrap().remove("timing");
        v
    };
    let whole = dir.path().join("whole.rampart-text");
    let expected = report(&run(&whole, &[]));
    let out = dir.path().join("parts.rampart-text");
    let ckpt = dir.path().join("parts.rampart-text.ckpt");
    let tune = dir.path().join("parts.rampart-text.ckpt.tune");
    // The head's 2 epochs, then 2 of fine-tuning's 3.
    run(&out, &["--stop-after-epochs", "2"]);
    assert!(tune.exists() && !out.exists());
    assert_eq!(report(&run(&out, &["--resume"])), expected);
    assert!(
        !ckpt.exists() && !tune.exists(),
        "a checkpoint outlived the run"
    );

    let bundle = rampart_core::bundle::TextBundle::load(&out).unwrap();
    let tuned = bundle.header.fine_tuned.as_ref().unwrap();
    assert_eq!(tuned.layers, 1);
    assert_ne!(tuned.base_fingerprint, bundle.header.encoder_fingerprint);
    let b = out.to_str().unwrap();
    let eval: serde_json::Value = serde_json::from_str(&ok(
        &["text", "eval", "--bundle", b, "--data", s, "--json"],
        &cache,
    ))
    .unwrap();
    assert_eq!(eval["macro_f1"], expected["macro_f1"]);
    assert_eq!(eval["confusion"], expected["confusion"]);
    let p: serde_json::Value = serde_json::from_str(&ok(
        &[
            "text",
            "predict",
            "--bundle",
            b,
            "A worker fell from a roof.",
            "--json",
        ],
        &cache,
    ))
    .unwrap();
    assert_eq!(p["probabilities"].as_array().unwrap().len(), 7);

    fails_with(
        &[
            "text",
            "train",
            "--fine-tune",
            "--seeds",
            "2",
            "--limit",
            "50",
            "--out",
            "x",
        ],
        &cache,
        "seeds = 1",
    );
    fails_with(
        &[
            "text",
            "train",
            "--fine-tune",
            "--fine-tune-layers",
            "7",
            "--limit",
            "50",
            "--epochs",
            "1",
            "--val",
            s,
            "--out",
            dir.path().join("y").to_str().unwrap(),
        ],
        &cache,
        "layers",
    );
}
