//! End-to-end runs of the robust-training methods and the evaluation suite through the CLI:
//! PreAct ResNet-18 (plain and with ANCRA's reverse attention) trains and is evaluated on data
//! written in the CIFAR-10 binary layout (generated here: no CIFAR-10 copy is needed).

mod common;

use common::{expect_failure, expect_ok};
use std::path::Path;
use std::process::{Command, Output};

fn rampart(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("rampart runs")
}

/// `records` CIFAR-10 binary records: a label byte, then 1024 red, 1024 green and 1024 blue
/// bytes. Class k is a bright square whose position and colour depend on k, on noise.
fn cifar_batch(records: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(records * 3073);
    for i in 0..records {
        let k = i % 10;
        out.push(k as u8);
        for ch in 0..3 {
            for r in 0..32 {
                for c in 0..32 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let noise = (state >> 58) as u8; // 0..63
                    let inside = r / 8 == k % 4 && c / 8 == (k / 4 + ch) % 4;
                    out.push(if inside { 180 + noise } else { noise });
                }
            }
        }
    }
    out
}

fn write_cifar(dir: &Path) {
    let d = dir.join("cifar10");
    std::fs::create_dir_all(&d).unwrap();
    for b in 1..=5 {
        std::fs::write(d.join(format!("data_batch_{b}.bin")), cifar_batch(20, b)).unwrap();
    }
    std::fs::write(d.join("test_batch.bin"), cifar_batch(30, 9)).unwrap();
}

#[test]
fn preact_resnet18_trains_and_is_evaluated_on_the_cifar10_layout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_cifar(&data);
    for (name, extra) in [
        ("plain", vec!["--method", "pgd-at"]),
        ("ancra", vec!["--method", "trades", "--ancra"]),
    ] {
        let bundle = dir.path().join(format!("{name}.rampart"));
        let b = bundle.to_str().unwrap();
        let mut args = vec![
            "train",
            "--dataset",
            "cifar10",
            "--arch",
            "preact-resnet18",
            "--resnet-width",
            "4",
            "--eps",
            "0.031",
            "--steps",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "20",
            "--val-size",
            "20",
            "--test-size",
            "30",
            "--out",
            b,
            "--json",
        ];
        args.extend(extra);
        let metrics: serde_json::Value =
            serde_json::from_str(&expect_ok(&args, rampart(&data, &args))).unwrap();
        assert_eq!(metrics["dataset"], "cifar10");
        assert_eq!(metrics["test_samples"], 30);
        assert_eq!(metrics["train_class_counts"].as_array().unwrap().len(), 10);
        let info = ["inspect", b, "--json"];
        let info: serde_json::Value =
            serde_json::from_str(&expect_ok(&info, rampart(&data, &info))).unwrap();
        assert_eq!(info["header"]["model"]["arch"], "preact-resnet18");
        assert_eq!(
            info["header"]["model"]["reverse_attention"],
            name == "ancra",
            "{name}"
        );
        let eval = [
            "eval",
            "--bundle",
            b,
            "--suite",
            "quick",
            "--eps",
            "0.031",
            "--limit",
            "30",
            "--apgd-steps",
            "2",
            "--square-queries",
            "5",
            "--no-sanity",
            "--json",
        ];
        let report: serde_json::Value =
            serde_json::from_str(&expect_ok(&eval, rampart(&data, &eval))).unwrap();
        let stages: Vec<&str> = report["report"]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["attack"].as_str().unwrap())
            .collect();
        let expected: &[&str] = if name == "ancra" {
            &["apgd-ce", "ra-aux", "ra-every-mask", "ra-bpda", "square"]
        } else {
            &["apgd-ce", "square"]
        };
        assert_eq!(stages, expected);
        assert_eq!(report["leaderboard"]["architecture"], "preact-resnet18");
        // Export in the twin's names (bench/twins.py PreActResNet18; its logits are compared
        // with Rampart's by bench/check_export.py).
        let out = dir.path().join("w.safetensors");
        let export = ["export", "--bundle", b, "--out", out.to_str().unwrap()];
        expect_ok(&export, rampart(&data, &export));
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let shape = |n: &str| st.tensor(n).unwrap().shape().to_vec();
        assert_eq!(shape("stem.weight"), [4, 3, 3, 3]);
        assert_eq!(shape("blocks.2.shortcut.weight"), [8, 4, 1, 1]);
        assert_eq!(shape("blocks.7.conv2.weight"), [32, 32, 3, 3]);
        assert_eq!(shape("final_norms.0.running_var"), [32]);
        assert_eq!(shape("linear.weight"), [10, 32]);
        let ra_norms = if name == "ancra" { 2 } else { 1 };
        // Stem, 8 blocks of two convolutions and two BatchNorms (4 tensors each), 3 shortcuts,
        // the final BatchNorms, the linear layer's weight and bias.
        assert_eq!(st.len(), 1 + 8 * 10 + 3 + 4 * ra_norms + 2, "{name}");
    }
    // CNN-only width flags are refused for the ResNet.
    let bad = [
        "train",
        "--dataset",
        "cifar10",
        "--arch",
        "preact-resnet18",
        "--hidden",
        "10",
        "--val-size",
        "20",
    ];
    expect_failure(&bad, rampart(&data, &bad), "--resnet-width");
}
