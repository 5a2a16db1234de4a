//! `rampart text` end to end on a slice of the OSHA reports: train a small classifier, evaluate
//! it (--json fields), predict one report, and reject bad input with clear errors. Needs the
//! shared data and MiniLM folders (present in CI); skipped without them.

mod common;

use common::{data_dir, expect_failure, expect_ok};
use std::path::Path;
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

#[test]
fn text_train_eval_predict_and_bad_input() {
    let data = data_dir();
    if !data.join("osha/train.json").exists()
        || !data
            .join("../models/all-MiniLM-L6-v2/model.safetensors")
            .exists()
    {
        eprintln!("skipped: no OSHA data or MiniLM under {}", data.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // A small validation file: the first 40 validation reports.
    let val: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(data.join("osha/val.json")).unwrap())
            .unwrap();
    let small = dir.path().join("val40.json");
    std::fs::write(&small, serde_json::to_string(&val[..40]).unwrap()).unwrap();
    let bundle = dir.path().join("osha.rampart-text");
    let b = bundle.to_str().unwrap();
    let s = small.to_str().unwrap();
    ok(
        &[
            "text",
            "train",
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
