//! End-to-end tests of the `rampart` CLI on real MNIST data (a small slice of it).

mod common;

use common::{data_dir, expect_failure, expect_ok, kill_after_checkpoints};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        // Keep lavapipe runs short: minimal kernel autotuning; and give Mesa a runtime dir.
        .env("CUBECL_AUTOTUNE_LEVEL", "minimal")
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .arg("--data-dir")
        .arg(data_dir())
        .output()
        .expect("rampart runs")
}

fn ok(args: &[&str]) -> String {
    expect_ok(args, rampart(args))
}

fn fails_with(args: &[&str], needle: &str) {
    expect_failure(args, rampart(args), needle);
}

/// A small bundle trained on 1,800 images for two epochs (a few seconds).
fn tiny_bundle(dir: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join("tiny.rampart");
    let o = out.to_str().unwrap();
    let mut args = vec![
        "train",
        "--limit",
        "2000",
        "--val-size",
        "200",
        "--epochs",
        "2",
        "--lr",
        "3e-3",
        "--conv",
        "8,16",
        "--hidden",
        "64",
        "--test-size",
        "500",
        "--out",
        o,
        "--json",
    ];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

#[test]
fn train_inspect_eval_attack_export_predict() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = tiny_bundle(dir.path(), &[]);
    let b = bundle.to_str().unwrap();

    let info: serde_json::Value = serde_json::from_str(&ok(&["inspect", b, "--json"])).unwrap();
    assert_eq!(info["header"]["dataset"], "mnist");
    assert_eq!(info["header"]["class_names"].as_array().unwrap().len(), 10);
    assert_eq!(info["header"]["recipe"]["method"]["name"], "standard");

    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        "--bundle",
        b,
        "--attack",
        "pgd,fgsm",
        "--eps",
        "0,0.1,0.3",
        "--steps",
        "10",
        "--limit",
        "200",
        "--json",
    ]))
    .unwrap();
    let clean = report["clean_accuracy"].as_f64().unwrap();
    assert!(
        clean > 0.7,
        "a tiny model after one epoch on 2k images: {clean}"
    );
    let robust = report["robust"].as_array().unwrap();
    assert_eq!(robust.len(), 6);
    for r in robust {
        for key in ["attack", "eps", "steps", "restarts", "accuracy"] {
            assert!(r.get(key).is_some(), "missing {key} in {r}");
        }
        let acc = r["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
    }
    // ε = 0 changes nothing; ε = 0.3 PGD breaks an undefended model.
    assert_eq!(robust[0]["accuracy"].as_f64().unwrap(), clean);
    assert!(
        robust[2]["accuracy"].as_f64().unwrap() < 0.2 * clean,
        "{}",
        robust[2]
    );

    // The quick suite: worst case over APGD-CE and Square, with sanity checks and a
    // leaderboard row.
    let table = dir.path().join("board.md");
    let suite: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        "--bundle",
        b,
        "--suite",
        "quick",
        "--eps",
        "0.3",
        "--limit",
        "100",
        "--square-queries",
        "100",
        "--table",
        table.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    let stages: Vec<&str> = suite["report"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["attack"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["apgd-ce", "square"]);
    let board = &suite["leaderboard"];
    assert_eq!(board["dataset"], "mnist");
    let robust_pct = board["autoattack_acc"].as_f64().unwrap();
    assert!(robust_pct <= board["clean_acc"].as_f64().unwrap());
    assert!(
        robust_pct < 20.0,
        "APGD at ε = 0.3 on an undefended model: {robust_pct}"
    );
    let sanity = &suite["report"]["sanity"];
    assert!(sanity["eps_curve"].as_array().unwrap().len() >= 3);
    assert_eq!(
        board["unreliable"],
        !sanity["flags"].as_array().unwrap().is_empty()
    );
    let md = std::fs::read_to_string(&table).unwrap();
    assert!(md.contains("| mnist | L∞ ε = 0.3 |"), "{md}");
    fails_with(
        &[
            "eval", "--bundle", b, "--suite", "quick", "--eps", "0.1,0.3",
        ],
        "exactly one --eps",
    );
    fails_with(
        &["eval", "--bundle", b, "--suite", "strongest"],
        "invalid value 'strongest'",
    );

    let png = dir.path().join("adv.png");
    let a: serde_json::Value = serde_json::from_str(&ok(&[
        "attack",
        "--bundle",
        b,
        "--index",
        "3",
        "--eps",
        "0.3",
        "--out",
        png.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert!(a["linf"].as_f64().unwrap() <= 0.3 + 1e-6);
    assert_eq!(a["after"]["probabilities"].as_array().unwrap().len(), 10);
    for f in ["adv.png", "adv-clean.png", "adv-delta.png"] {
        let bytes = std::fs::read(dir.path().join(f)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{f} is not a PNG");
    }

    let st = dir.path().join("w.safetensors");
    ok(&[
        "export",
        "--bundle",
        b,
        "--format",
        "safetensors",
        "--out",
        st.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&st).unwrap();
    let t = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = t.names();
    names.sort();
    assert_eq!(
        names,
        [
            "conv1.bias",
            "conv1.weight",
            "conv2.bias",
            "conv2.weight",
            "fc1.bias",
            "fc1.weight",
            "fc2.bias",
            "fc2.weight"
        ]
    );
    assert_eq!(t.tensor("fc1.weight").unwrap().shape(), [64, 16 * 7 * 7]);
    assert_eq!(t.tensor("conv1.weight").unwrap().shape(), [8, 1, 5, 5]);

    let p: serde_json::Value =
        serde_json::from_str(&ok(&["predict", "--bundle", b, "--index", "3", "--json"])).unwrap();
    let probs: Vec<f64> = p["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    assert_eq!(p["predicted"], a["before"]["class"]);

    // SIA diagnosis: JSON with one histogram entry per attribute, and the SVG charts.
    let diag = dir.path().join("diag");
    let d = diag.to_str().unwrap();
    let args = [
        "diagnose",
        "--bundle",
        b,
        "--limit",
        "20",
        "--steps",
        "10",
        "--sweep-points",
        "3",
        "--attributes",
        "rotation,thickness,brightness",
        "--out",
        d,
        "--json",
    ];
    let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    assert_eq!(v["attributes"].as_array().unwrap().len(), 3);
    assert_eq!(v["overall"]["mass"].as_array().unwrap().len(), 3);
    assert_eq!(v["sweeps"][0]["accuracy"].as_array().unwrap().len(), 3);
    let rate = v["success_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&rate));
    for f in ["diagnosis.json", "mass.svg", "dominant.svg", "sweep.svg"] {
        assert!(diag.join(f).exists(), "{f} was not written");
    }
    fails_with(
        &[
            "diagnose",
            "--bundle",
            b,
            "--attributes",
            "wobble",
            "--out",
            d,
        ],
        "unknown attribute 'wobble'",
    );
    fails_with(
        &["diagnose", "--bundle", b, "--attributes", "hue", "--out", d],
        "hue needs colour images",
    );
}

#[test]
fn corrupt_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = tiny_bundle(dir.path(), &[]);
    let good = std::fs::read(&bundle).unwrap();
    let bad = dir.path().join("bad.rampart");
    let b = bad.to_str().unwrap();

    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    fails_with(&["eval", "--bundle", b], "checksum mismatch");
    let mut flipped = good.clone();
    flipped[100] ^= 1;
    std::fs::write(&bad, &flipped).unwrap();
    fails_with(&["inspect", b], "corrupt");
    std::fs::write(
        &bad,
        b"not a bundle at all, just some text that is long enough to parse",
    )
    .unwrap();
    fails_with(&["inspect", b], "wrong magic");
    fails_with(&["inspect", "/nonexistent/x.rampart"], "file not found");

    // A data directory with damaged MNIST files.
    let data = dir.path().join("data");
    let mnist = data.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let check = |needle: &str| {
        let out = run(&["train", "--epochs", "1"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success() && err.contains(needle),
            "expected '{needle}': {err}"
        );
    };
    check("file not found");
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28];
    images.extend(vec![0u8; 2 * 784]);
    std::fs::write(mnist.join("train-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(
        mnist.join("train-labels-idx1-ubyte"),
        [0, 0, 8, 2, 0, 0, 0, 2, 1, 1],
    )
    .unwrap();
    check("wrong magic number");
    std::fs::write(
        mnist.join("train-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 2, 1],
    )
    .unwrap();
    check("truncated");
    std::fs::write(
        mnist.join("train-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 3, 1, 1, 1],
    )
    .unwrap();
    check("2 images but 3 labels");
    std::fs::write(
        mnist.join("train-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 2, 1, 12],
    )
    .unwrap();
    check("label 12 at index 1 is out of range");

    fails_with(
        &[
            "eval",
            "--bundle",
            bundle.to_str().unwrap(),
            "--eps=-0.1",
            "--limit",
            "10",
        ],
        "eps must be",
    );
    fails_with(
        &[
            "attack",
            "--bundle",
            bundle.to_str().unwrap(),
            "--index",
            "999999",
        ],
        "out of range",
    );
    fails_with(&["train", "--dataset", "imagenet"], "unknown dataset");
}

/// Kills a training run with SIGKILL at three random checkpoints, resumes it after each, and
/// checks it ends exactly like a run that was never interrupted.
#[test]
fn resume_after_kill_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "train",
        "--method",
        "fgsm-rs",
        "--eps",
        "0.2",
        "--limit",
        "6000",
        "--val-size",
        "500",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--conv",
        "8,16",
        "--hidden",
        "64",
        "--test-size",
        "500",
        "--checkpoint-every",
        "10",
        "--seed",
        "3",
    ];
    let whole = dir.path().join("whole.rampart");
    let mut args = common.to_vec();
    args.extend(["--out", whole.to_str().unwrap()]);
    ok(&args);

    let resumed = dir.path().join("resumed.rampart");
    let ckpt = dir.path().join("resumed.ckpt");
    let mut args = common.to_vec();
    args.extend(["--out", resumed.to_str().unwrap(), "--resume"]);
    // Three kills without warning, each after a random number of further checkpoints (of 24
    // in the run), each followed by a --resume that the next kill interrupts.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill points from seed {seed}");
    let mut s = seed | 1;
    let mut killed = 0;
    for _ in 0..3 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let wait_for = 1 + (s % 6) as usize;
        let child = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(&args)
            .arg("--data-dir")
            .arg(data_dir())
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if kill_after_checkpoints(child, &ckpt, wait_for).0 {
            killed += 1;
        }
    }
    assert!(killed == 3, "a run finished before it was killed");
    assert!(!resumed.exists(), "a killed run wrote its bundle");

    ok(&args);
    let metrics = |p: &Path| -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p.with_extension("json")).unwrap()).unwrap();
        for e in v["history"].as_array_mut().unwrap() {
            e.as_object_mut().unwrap().remove("seconds");
        }
        v.as_object_mut().unwrap().remove("train_seconds");
        v
    };
    assert_eq!(metrics(&whole), metrics(&resumed));
}

/// The wgpu backend (lavapipe on machines without a GPU) trains like the CPU backend.
#[test]
fn wgpu_training_steps_match_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let run = |device: &str| -> serde_json::Value {
        let out = dir.path().join(format!("{device}.rampart"));
        let o = out.to_str().unwrap();
        serde_json::from_str(&ok(&[
            "--device",
            device,
            "train",
            "--limit",
            "112",
            "--val-size",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--conv",
            "4,8",
            "--hidden",
            "16",
            "--test-size",
            "64",
            "--out",
            o,
            "--json",
        ]))
        .unwrap()
    };
    let cpu = run("cpu");
    let gpu = run("wgpu");
    let loss = |v: &serde_json::Value| v["history"][0]["train_loss"].as_f64().unwrap();
    assert!(
        (loss(&cpu) - loss(&gpu)).abs() < 1e-3 * loss(&cpu).abs().max(1.0),
        "cpu {} vs wgpu {}",
        loss(&cpu),
        loss(&gpu)
    );
    assert_eq!(
        cpu["history"][0]["train_accuracy"],
        gpu["history"][0]["train_accuracy"]
    );
    assert_eq!(cpu["test_clean_accuracy"], gpu["test_clean_accuracy"]);
}

/// The strided network trains with robust validation and keeps its best epoch.
#[test]
fn strided_pgd_at_with_robust_validation_keeps_the_best_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = tiny_bundle(
        dir.path(),
        &[
            "--arch",
            "strided",
            "--method",
            "pgd-at",
            "--eps",
            "0.1",
            "--steps",
            "2",
            "--val-pgd-steps",
            "3",
            "--val-pgd-samples",
            "100",
            "--keep-best",
        ],
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.with_extension("json")).unwrap())
            .unwrap();
    let history = metrics["history"].as_array().unwrap();
    let robust: Vec<f64> = history
        .iter()
        .map(|m| m["val_robust_accuracy"].as_f64().unwrap())
        .collect();
    let kept = metrics["kept_epoch"].as_u64().unwrap() as usize;
    let best = robust.iter().cloned().fold(f64::MIN, f64::max);
    assert_eq!(robust[kept - 1], best, "kept epoch {kept} of {robust:?}");
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", bundle.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(info["header"]["model"]["style"], "strided");
    // Early stopping chooses on validation data, so it needs --keep-best.
    let out = dir.path().join("p.rampart");
    fails_with(
        &[
            "train",
            "--dataset",
            "mnist",
            "--patience",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        "--keep-best",
    );
    assert!(!out.exists());
}
