//! `rampart-core`: robust classifiers on Burn — data, models (image CNNs and a BERT sentence
//! encoder for text), adversarial attacks,
//! robust losses, training, evaluation and bundles. Device-agnostic: the same code runs on
//! Burn's CPU backend, natively on wgpu, and in a browser on WebGPU.

pub mod attack;
pub mod augment;
pub mod bundle;
pub mod data;
pub mod encoder;
pub mod error;
pub mod eval;
pub mod export;
pub mod kernels;
pub mod loss;
pub mod model;
pub mod text;
pub mod train;

pub use error::{Error, Result};

/// Reads a whole file; a missing one is [`Error::MissingFile`], any other failure
/// [`Error::Io`], both naming the path.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    if !path.exists() {
        return Err(Error::MissingFile { path: path.into() });
    }
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

/// Writes `bytes` to `path` so that a reader never sees a half-written file: the data go to
/// a temporary file in the same folder, are flushed to disk, then renamed over `path`.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        // Closed at the end of this block, before the rename.
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Index of the largest value (the first among equals; 0 for an empty slice).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map_or(0, |(i, _)| i)
}
