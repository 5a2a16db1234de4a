//! The one error type of the core crate.

use std::path::PathBuf;

/// Everything that can go wrong in `rampart-core`. Every variant names the
/// offending file, field or value so that a message alone tells the user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("file not found: {path}")]
    MissingFile { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: wrong magic number {found:#010x}, expected {expected:#010x}")]
    BadMagic {
        what: String,
        found: u32,
        expected: u32,
    },
    #[error("{what}: truncated, expected {expected} bytes but found {found}")]
    Truncated {
        what: String,
        expected: usize,
        found: usize,
    },
    #[error("{what}: {images} images but {labels} labels")]
    CountMismatch {
        what: String,
        images: usize,
        labels: usize,
    },
    #[error("{what}: label {label} at index {index} is out of range (0..{num_classes})")]
    LabelOutOfRange {
        what: String,
        index: usize,
        label: usize,
        num_classes: usize,
    },
    /// One record of a text dataset is unusable; `record` names it by position and id.
    #[error("{what}: record {record}: {reason}")]
    BadRecord {
        what: String,
        record: String,
        reason: String,
    },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("bundle: {0}")]
    Bundle(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
