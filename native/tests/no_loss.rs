//! Nothing is lost: `train` never deletes or overwrites an earlier run's checkpoint, bundle or
//! metrics without `--overwrite`, and `--resume` refuses a checkpoint written for other data.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{data_dir, expect_failure, expect_ok};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir())
        .output()
        .unwrap()
}

/// A few seconds of training on 300 images.
fn args<'a>(out: &'a Path, limit: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--limit",
        limit,
        "--val-size",
        "100",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--conv",
        "4,8",
        "--hidden",
        "16",
        "--test-size",
        "0",
        "--checkpoint-every",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]
}

fn with<'a>(mut base: Vec<&'a str>, extra: &[&'a str]) -> Vec<&'a str> {
    base.extend_from_slice(extra);
    base
}

#[test]
fn outputs_and_checkpoints_survive_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.rampart");
    let first = args(&out, "300");
    expect_ok(&first, rampart(&first));
    let bundle = std::fs::read(&out).unwrap();
    let metrics = std::fs::read(out.with_extension("json")).unwrap();

    // The same command again is refused and touches nothing.
    expect_failure(&first, rampart(&first), "pass --overwrite");
    let resume = with(args(&out, "300"), &["--resume"]);
    expect_failure(&resume, rampart(&resume), "pass --overwrite");
    assert_eq!(std::fs::read(&out).unwrap(), bundle);
    assert_eq!(std::fs::read(out.with_extension("json")).unwrap(), metrics);
    let again = with(args(&out, "300"), &["--overwrite"]);
    expect_ok(&again, rampart(&again));

    // An interrupted run leaves its checkpoint; a fresh start without --resume keeps it.
    let out = dir.path().join("n.rampart");
    let ckpt = out.with_extension("ckpt");
    let stopped = with(args(&out, "300"), &["--stop-after-steps", "1"]);
    expect_ok(&stopped, rampart(&stopped));
    assert!(ckpt.exists() && !out.exists());
    let saved = std::fs::read(&ckpt).unwrap();
    let fresh = args(&out, "300");
    expect_failure(&fresh, rampart(&fresh), "holds an unfinished run");
    assert_eq!(std::fs::read(&ckpt).unwrap(), saved);

    // Resuming on other data is refused, naming the data; on the same data it finishes.
    let other = with(args(&out, "400"), &["--resume"]);
    expect_failure(&other, rampart(&other), "training data");
    assert_eq!(std::fs::read(&ckpt).unwrap(), saved);
    let resume = with(args(&out, "300"), &["--resume"]);
    expect_ok(&resume, rampart(&resume));
    assert!(out.exists() && !ckpt.exists());
}
