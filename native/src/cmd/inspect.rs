//! `rampart inspect` and `rampart export`: what a bundle holds, and its weights for the
//! PyTorch twin of its network.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use rampart_core::bundle::Bundle;

use crate::device::DeviceChoice;

#[derive(Args)]
pub struct InspectArgs {
    /// Bundle file.
    bundle: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Safetensors,
}

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long, value_enum, default_value_t = ExportFormat::Safetensors)]
    format: ExportFormat,
    #[arg(long)]
    out: PathBuf,
}

pub fn cmd_inspect(a: InspectArgs) -> Result<()> {
    let b = Bundle::load(&a.bundle)
        .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    let info = serde_json::json!({
        "format_version": rampart_core::bundle::BUNDLE_VERSION,
        "weights_bytes": b.weights_len(),
        "header": b.header,
    });
    if a.json {
        println!("{info}");
    } else {
        println!("{}", serde_json::to_string_pretty(&info)?);
    }
    Ok(())
}

pub fn cmd_export(a: ExportArgs, device: DeviceChoice) -> Result<()> {
    let b = Bundle::load(&a.bundle)
        .with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    let model = b.model(&device.init()?)?;
    match a.format {
        ExportFormat::Safetensors => {
            let bytes = rampart_core::export::to_safetensors(
                &model,
                &serde_json::to_string(&b.header.model)?,
            )?;
            rampart_core::write_atomically(&a.out, &bytes)?;
        }
    }
    println!("wrote {}", a.out.display());
    Ok(())
}
