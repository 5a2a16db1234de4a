//! PNG output of images in `[0, 1]` (C×H×W, one or three channels).

use std::path::Path;

use anyhow::{Context, Result, bail};

fn to_bytes(pixels: &[f32], [c, h, w]: [usize; 3]) -> Result<(Vec<u8>, png::ColorType)> {
    let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    match c {
        1 => Ok((
            pixels.iter().map(|&v| q(v)).collect(),
            png::ColorType::Grayscale,
        )),
        3 => {
            let plane = h * w;
            let mut out = Vec::with_capacity(3 * plane);
            for i in 0..plane {
                for ch in 0..3 {
                    out.push(q(pixels[ch * plane + i]));
                }
            }
            Ok((out, png::ColorType::Rgb))
        }
        _ => bail!("cannot write a {c}-channel image as PNG"),
    }
}

pub fn write_png(path: &Path, pixels: &[f32], shape: [usize; 3]) -> Result<()> {
    let (bytes, color) = to_bytes(pixels, shape)?;
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, shape[2] as u32, shape[1] as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&bytes)?;
    }
    rampart_core::write_atomically(path, &buf)
        .with_context(|| format!("writing {}", path.display()))
}

/// The perturbation, magnified so its largest entry spans the range: grey is zero.
pub fn write_delta_png(path: &Path, clean: &[f32], adv: &[f32], shape: [usize; 3]) -> Result<()> {
    let delta: Vec<f32> = clean.iter().zip(adv).map(|(c, a)| a - c).collect();
    let max = delta.iter().fold(0f32, |m, d| m.max(d.abs())).max(1e-12);
    let shown: Vec<f32> = delta.iter().map(|d| 0.5 + 0.5 * d / max).collect();
    write_png(path, &shown, shape)
}
