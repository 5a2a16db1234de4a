//! Checkpoints: the whole state of a run (recipe, architecture, position, history, running
//! sums, weights, optimiser, best epoch) in one sealed file, written atomically, so a run
//! resumed from one ends exactly where an uninterrupted run ends.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use super::{EpochMetrics, TrainConfig};
use crate::error::{Error, Result};
use crate::io::{seal, unseal};
use crate::model::{Model, ModelConfig};

/// Where and how often checkpoints are written.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    pub path: PathBuf,
    /// Continue from `path` if it exists.
    pub resume: bool,
    /// Stop (as if killed) after this many steps in this process; for tests.
    pub stop_after_steps: Option<usize>,
}

pub(super) const CHECKPOINT_MAGIC: &[u8; 8] = b"RMPTCKPT";
pub(super) const CHECKPOINT_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CheckpointHeader {
    /// Fingerprints of the training and validation sets (see [`crate::data::ImageDataset::fingerprint`]);
    /// `None` in checkpoints written before it existed.
    #[serde(default)]
    pub(super) data: Option<String>,
    pub(super) config: TrainConfig,
    pub(super) model: ModelConfig,
    /// The next step to run: epoch and batch index within it.
    pub(super) epoch: usize,
    pub(super) batch: usize,
    pub(super) history: Vec<EpochMetrics>,
    pub(super) running: Running,
    /// The epoch whose weights the third section holds (`keep_best`).
    #[serde(default)]
    pub(super) best_epoch: Option<usize>,
}

impl CheckpointHeader {
    /// The state of a run whose next step is `(epoch, batch)`.
    pub(super) fn at(
        config: &TrainConfig,
        model: &ModelConfig,
        data: &str,
        (epoch, batch): (usize, usize),
        history: &[EpochMetrics],
        running: &Running,
        best: Option<&(usize, Model)>,
    ) -> Self {
        Self {
            config: config.clone(),
            model: model.clone(),
            data: Some(data.into()),
            epoch,
            batch,
            history: history.to_vec(),
            running: running.clone(),
            best_epoch: best.map(|b| b.0),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Running {
    pub(super) loss_sum: f64,
    pub(super) correct: usize,
    pub(super) seen: usize,
    pub(super) seconds: f64,
}

pub(super) fn save_checkpoint(
    path: &Path,
    header: &CheckpointHeader,
    model: &Model,
    optim: &ModuleOptimizer,
    best: Option<&(usize, Model)>,
) -> Result<()> {
    let ck = |e: String| Error::Checkpoint(e);
    let bytes = |m: &Model| {
        m.clone()
            .into_record()
            .into_bytes()
            .map_err(|e| ck(e.to_string()))
    };
    let weights = bytes(model)?;
    let best = match best {
        Some((_, m)) => bytes(m)?,
        None => Bytes::from_bytes_vec(Vec::new()),
    };
    let optim = optim.into_bytes().map_err(|e| ck(e.to_string()))?;
    let header = serde_json::to_vec(header).map_err(|e| ck(e.to_string()))?;
    crate::write_atomically(
        path,
        &seal(
            CHECKPOINT_MAGIC,
            CHECKPOINT_VERSION,
            &header,
            &[&weights, &optim, &best],
        ),
    )
}

pub(super) type Restored = (
    CheckpointHeader,
    Model,
    ModuleOptimizer,
    Option<(usize, Model)>,
);

pub(super) fn load_checkpoint(
    path: &Path,
    device: &Device,
    fresh_optim: ModuleOptimizer,
) -> Result<Restored> {
    let bytes = crate::read_file(path)?;
    let (header, sections) = unseal(
        &bytes,
        CHECKPOINT_MAGIC,
        CHECKPOINT_VERSION,
        3,
        "checkpoint",
    )
    .map_err(Error::Checkpoint)?;
    let header: CheckpointHeader = serde_json::from_slice(header)
        .map_err(|e| Error::Checkpoint(format!("unreadable header: {e}")))?;
    let load = |bytes: &[u8]| -> Result<Model> {
        crate::bundle::check_record(bytes).map_err(Error::Checkpoint)?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| Error::Checkpoint(e.to_string()))?;
        header
            .model
            .init(device)?
            .try_load_record(record)
            .map_err(|e| Error::Checkpoint(e.to_string()))
    };
    let model = load(sections[0])?;
    let best = match header.best_epoch {
        Some(epoch) => Some((epoch, load(sections[2])?)),
        None => None,
    };
    let optim = load_optimizer(fresh_optim, sections[1])?;
    Ok((header, model, optim, best))
}

/// `fresh` with the optimiser state of `bytes`. Burn 0.22.1 panics on a state tensor without
/// a parameter id (found by core/tests/fuzz.rs): that is checked first, and any other panic
/// of the load is an error too.
pub(crate) fn load_optimizer(fresh: ModuleOptimizer, bytes: &[u8]) -> Result<ModuleOptimizer> {
    let ck = |e: String| Error::Checkpoint(format!("optimiser state: {e}"));
    let tensors = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .and_then(burn_pack::Reader::into_tensors)
        .map_err(|e| ck(e.to_string()))?;
    if let Some(t) = tensors.iter().find(|t| t.param_id.is_none()) {
        return Err(ck(format!("tensor {} names no parameter", t.name)));
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fresh.from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
    }))
    .map_err(|_| ck("unreadable".into()))?
    .map_err(|e| ck(e.to_string()))
}

/// The top-level fields in which two serialisable values differ, e.g. `lr, epochs`.
pub(crate) fn differing_fields<T: Serialize>(a: &T, b: &T) -> Vec<String> {
    let (a, b) = (serde_json::to_value(a), serde_json::to_value(b));
    match (a, b) {
        (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .cloned()
                .collect()
        }
        (a, b) if a.as_ref().ok() == b.as_ref().ok() => Vec::new(),
        _ => vec!["(the whole value)".into()],
    }
}
