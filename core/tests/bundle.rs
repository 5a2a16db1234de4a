//! Bundles round-trip exactly, and every kind of damage is a typed error, never a panic.

mod common;

use common::*;
use rampart_core::Error;
use rampart_core::bundle::{Bundle, BundleHeader};
use rampart_core::model::{CnnConfig, ModelConfig};
use sha2::{Digest, Sha256};

fn header(model: ModelConfig) -> BundleHeader {
    BundleHeader {
        model,
        class_names: vec!["a".into(), "b".into(), "c".into()],
        dataset: "synthetic".into(),
        recipe: serde_json::json!({"method": "standard"}),
        metrics: serde_json::json!({"accuracy": 0.5}),
        created_by: "test".into(),
    }
}

fn bytes() -> Vec<u8> {
    Bundle::new(&tiny_model(1), header(tiny_config(3)))
        .unwrap()
        .to_bytes()
}

fn reseal(mut body: Vec<u8>) -> Vec<u8> {
    let d = Sha256::digest(&body);
    body.extend_from_slice(&d);
    body
}

#[test]
fn round_trip_gives_the_same_logits() {
    let device = cpu();
    let model = tiny_model(1);
    let b = Bundle::from_bytes(&bytes()).unwrap();
    let loaded = b.model(&device).unwrap();
    let x = images(3, 2, &device);
    assert_eq!(to_vec(model.forward(x.clone())), to_vec(loaded.forward(x)));
    assert_eq!(b.header.class_names.len(), 3);
}

#[test]
fn damage_is_a_typed_error() {
    let good = bytes();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let mut wrong_magic = good.clone();
    wrong_magic[0] = b'X';
    let mut wrong_version = good[..good.len() - 32].to_vec();
    wrong_version[8..12].copy_from_slice(&99u32.to_le_bytes());
    let cases = [
        ("empty", vec![]),
        ("truncated", good[..good.len() / 3].to_vec()),
        ("last byte missing", good[..good.len() - 1].to_vec()),
        ("flipped bit", flipped),
        ("wrong magic", wrong_magic),
        ("wrong version", reseal(wrong_version)),
        ("garbage", vec![7u8; 5000]),
    ];
    for (what, b) in cases {
        match Bundle::from_bytes(&b) {
            Err(Error::Bundle(msg)) => assert!(!msg.is_empty(), "{what}"),
            other => panic!(
                "{what}: expected a bundle error, got {:?}",
                other.map(|_| ())
            ),
        }
    }
}

#[test]
fn wrong_architecture_is_an_error() {
    // A header that claims a wider network than the weights hold.
    let wider = ModelConfig::Cnn(CnnConfig::madry(1, 8, 8, 3).with_widths([4, 8], 32));
    let b = Bundle::new(&tiny_model(1), header(wider)).unwrap();
    let b = Bundle::from_bytes(&b.to_bytes()).unwrap();
    let err = b.model(&cpu()).unwrap_err();
    assert!(
        matches!(err, Error::Bundle(ref m) if m.contains("architecture")),
        "{err}"
    );
}

#[test]
fn class_names_must_match_the_model() {
    let mut h = header(tiny_config(3));
    h.class_names.pop();
    assert!(matches!(
        Bundle::new(&tiny_model(1), h),
        Err(Error::Bundle(_))
    ));
}

#[test]
fn strided_networks_round_trip_and_old_configs_read_as_madry() {
    let device = cpu();
    let config = ModelConfig::Cnn(CnnConfig::strided(1, 8, 8, 3).with_widths([4, 8], 16));
    let model = config.init_seeded(&device, 3).unwrap();
    let b = Bundle::new(&model, header(config.clone()))
        .unwrap()
        .to_bytes();
    let b = Bundle::from_bytes(&b).unwrap();
    assert_eq!(b.header.model, config);
    let x = images(3, 4, &device);
    let logits = model.forward(x.clone());
    assert_eq!(logits.dims(), [3, 3]);
    assert_eq!(to_vec(logits), to_vec(b.model(&device).unwrap().forward(x)));
    // conv4×4 weights, not conv5×5.
    let w = model.named_weights();
    assert_eq!(w[0].1, vec![4, 1, 4, 4]);

    // Bundles written before the style field existed hold Madry networks.
    let mut json = serde_json::to_value(tiny_config(3)).unwrap();
    json.as_object_mut().unwrap().remove("style");
    let old: ModelConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old, tiny_config(3));
}
