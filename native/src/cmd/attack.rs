//! `rampart attack`: attacks one test image and writes the adversarial image.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use rampart_core::eval::predict::{ImageAttackRequest, Prediction, attack_image};

use crate::args::AttackOpts;
use crate::device::DeviceChoice;
use crate::{image, load_bundle_and_test};

#[derive(Args)]
pub struct AttackArgs {
    /// Bundle file (from `rampart train`).
    #[arg(long)]
    bundle: PathBuf,
    /// Index of the test image.
    #[arg(long, default_value_t = 0)]
    index: usize,
    #[arg(long, default_value_t = 0.3)]
    eps: f32,
    /// Target class for a targeted attack.
    #[arg(long)]
    target: Option<usize>,
    #[command(flatten)]
    attack: AttackOpts,
    /// Where to write the adversarial image (PNG); a sibling `-delta.png` shows the
    /// magnified perturbation and `-clean.png` the input.
    #[arg(long, default_value = "adv.png")]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn cmd_attack(a: AttackArgs, device: DeviceChoice, data_dir: &Path) -> Result<()> {
    let (bundle, test) = load_bundle_and_test(&a.bundle, data_dir)?;
    if a.index >= test.len() {
        bail!(
            "--index {} is out of range: the test set has {} images",
            a.index,
            test.len()
        );
    }
    let [spec] = &a.attack.specs(a.target.is_some())?[..] else {
        bail!("attack takes exactly one --attack");
    };
    let dev = device.init()?;
    let model = bundle.model(&dev)?;
    let names = &bundle.header.class_names;
    let clean = test.image(a.index);
    let request = ImageAttackRequest {
        pixels: clean,
        eps: a.eps,
        label: Some(test.labels[a.index]),
        target: a.target,
        seed: a.attack.seed,
    };
    let r = pollster::block_on(attack_image(
        &model,
        names,
        test.shape(),
        spec,
        &request,
        &dev,
    ))?;
    let shape = test.shape();
    image::write_png(&a.out, &r.adversarial, shape)?;
    let stem = a.out.with_extension("");
    image::write_png(
        &PathBuf::from(format!("{}-clean.png", stem.display())),
        clean,
        shape,
    )?;
    image::write_delta_png(
        &PathBuf::from(format!("{}-delta.png", stem.display())),
        clean,
        &r.adversarial,
        shape,
    )?;
    let side = |p: &Prediction| serde_json::json!({ "class": p.predicted, "name": p.label, "probabilities": p.probabilities });
    if a.json {
        let result = serde_json::json!({
            "index": a.index,
            "label": test.labels[a.index],
            "attack": r.attack,
            "eps": a.eps,
            "target": a.target,
            "before": side(&r.before),
            "after": side(&r.after),
            "linf": r.linf,
            "success": r.success,
            "out": a.out,
        });
        println!("{result}");
    } else {
        println!("image {} (label {})", a.index, names[test.labels[a.index]]);
        let p = |p: &Prediction| format!("{} ({:.3})", p.label, p.probabilities[p.predicted]);
        println!("before: {}", p(&r.before));
        println!(
            "after:  {}  [{} eps={} linf={:.4}]",
            p(&r.after),
            r.attack,
            a.eps,
            r.linf
        );
        println!("wrote {}", a.out.display());
    }
    Ok(())
}
