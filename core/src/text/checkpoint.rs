//! Checkpoints of text training: recipe, data fingerprint, the next epoch, the history so far,
//! the head's weights and the optimiser, in one sealed file written atomically after every
//! epoch. Each epoch reseeds every random source from (seed, epoch), so a run resumed from a
//! checkpoint ends exactly where an uninterrupted run ends.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::classifier::{Mlp, MlpConfig, TextEpoch, TextTrainConfig};
use crate::error::{Error, Result};
use crate::io::{seal, unseal};

/// Where text training keeps its checkpoint.
#[derive(Debug, Clone)]
pub struct TextCheckpointOptions {
    pub path: PathBuf,
    /// Continue from `path` if it exists.
    pub resume: bool,
    /// Stop (as if killed) after this many epochs in this process (of each seed-ensemble
    /// member this process trains); for tests.
    pub stop_after_epochs: Option<usize>,
}

const MAGIC: &[u8; 8] = b"RMPTTXCK";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TextCheckpointHeader {
    /// SHA-256 of the embeddings and labels trained on.
    pub(super) data: String,
    pub(super) config: TextTrainConfig,
    pub(super) mlp: MlpConfig,
    /// The next epoch to run.
    pub(super) epoch: usize,
    pub(super) history: Vec<TextEpoch>,
}

/// SHA-256 over the embeddings (their f32 bits) and the labels, with their shapes.
pub(super) fn fingerprint(x: &[Vec<f32>], y: &[usize]) -> String {
    let mut h = Sha256::new();
    h.update((x.len() as u64).to_le_bytes());
    for row in x {
        h.update((row.len() as u64).to_le_bytes());
        for v in row {
            h.update(v.to_le_bytes());
        }
    }
    for &c in y {
        h.update((c as u64).to_le_bytes());
    }
    format!("{:x}", h.finalize())
}

pub(super) fn save(
    path: &Path,
    header: &TextCheckpointHeader,
    model: &Mlp,
    optim: &ModuleOptimizer,
) -> Result<()> {
    let ck = |e: String| Error::Checkpoint(e);
    let weights = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| ck(e.to_string()))?;
    let optim = optim.into_bytes().map_err(|e| ck(e.to_string()))?;
    let header = serde_json::to_vec(header).map_err(|e| ck(e.to_string()))?;
    crate::write_atomically(path, &seal(MAGIC, VERSION, &header, &[&weights, &optim]))
}

/// Refuses the checkpoint at `path` unless it was written under `config` (`saved`) and for the
/// same data (`same_data`; `data` names what differs otherwise).
pub(super) fn same_run(
    path: &Path,
    saved: &TextTrainConfig,
    config: &TextTrainConfig,
    same_data: bool,
    data: &str,
) -> Result<()> {
    let mut differs = crate::train::checkpoint::differing_fields(saved, config);
    if !same_data {
        differs.insert(0, data.into());
    }
    if differs.is_empty() {
        return Ok(());
    }
    Err(Error::Checkpoint(format!(
        "{} was written by another run; it differs in: {}",
        path.display(),
        differs.join(", ")
    )))
}

/// The checkpoint at `path`, refused unless it was written for this recipe and this data.
pub(super) fn load(
    path: &Path,
    config: &TextTrainConfig,
    data: &str,
    device: &Device,
    fresh_optim: ModuleOptimizer,
) -> Result<(TextCheckpointHeader, Mlp, ModuleOptimizer)> {
    let bytes = crate::read_file(path)?;
    let (header, sections) =
        unseal(&bytes, MAGIC, VERSION, 2, "text checkpoint").map_err(Error::Checkpoint)?;
    let header: TextCheckpointHeader = serde_json::from_slice(header)
        .map_err(|e| Error::Checkpoint(format!("unreadable header: {e}")))?;
    same_run(
        path,
        &header.config,
        config,
        header.data == data,
        "the training data (embeddings or labels)",
    )?;
    crate::bundle::check_record(sections[0]).map_err(Error::Checkpoint)?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(sections[0].to_vec()))
        .map_err(|e| Error::Checkpoint(e.to_string()))?;
    let model = header
        .mlp
        .init(device)?
        .try_load_record(record)
        .map_err(|e| Error::Checkpoint(e.to_string()))?;
    let optim = crate::train::checkpoint::load_optimizer(fresh_optim, sections[1], sections[0])?;
    Ok((header, model, optim))
}
