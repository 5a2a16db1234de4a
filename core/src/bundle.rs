//! Bundles: one versioned, checksummed file with a model's architecture, weights, class
//! names, training recipe and metrics. Loadable from bytes, because the browser has no
//! filesystem; every way a file can be damaged maps to an [`Error::Bundle`].
//!
//! Layout (little-endian): `magic[8] | version u32 | header_len u64 | header (JSON) |
//! weights_len u64 | weights (burnpack) | sha256[32]` — the digest covers all preceding bytes.

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::{Model, ModelConfig};

pub const BUNDLE_MAGIC: &[u8; 8] = b"RAMPART\0";
pub const BUNDLE_VERSION: u32 = 1;

/// A sealed container: magic, version, a JSON header and binary sections, and a SHA-256.
/// Shared by bundles and training checkpoints.
pub(crate) fn seal(magic: &[u8; 8], version: u32, header: &[u8], sections: &[&[u8]]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(64 + header.len() + sections.iter().map(|s| s.len() + 8).sum::<usize>());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    for part in std::iter::once(header).chain(sections.iter().copied()) {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(part);
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Opens a container written by [`seal`]: checks magic, checksum and version, and returns
/// the header and `n_sections` sections.
pub(crate) fn unseal<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    version: u32,
    n_sections: usize,
    what: &str,
) -> std::result::Result<(&'a [u8], Vec<&'a [u8]>), String> {
    if bytes.len() < 8 + 4 + 32 {
        return Err(format!("{what} is truncated ({} bytes)", bytes.len()));
    }
    if &bytes[..8] != magic {
        return Err(format!("not a {what} (wrong magic bytes)"));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(format!(
            "{what} is corrupt or truncated (checksum mismatch)"
        ));
    }
    let found = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
    if found != version {
        return Err(format!(
            "{what} has format version {found}, this build reads version {version}"
        ));
    }
    let mut at = 12;
    let mut take = || -> std::result::Result<&'a [u8], String> {
        let len_bytes = body
            .get(at..at + 8)
            .ok_or_else(|| format!("{what} is truncated"))?;
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        let part = body
            .get(at + 8..at.saturating_add(8).saturating_add(len))
            .ok_or_else(|| format!("{what} is truncated"))?;
        at += 8 + len;
        Ok(part)
    };
    let header = take()?;
    let sections = (0..n_sections)
        .map(|_| take())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((header, sections))
}

/// Both bundle kinds name every class of their model, no more, no fewer.
fn check_classes(names: &[String], num_classes: usize) -> Result<()> {
    if names.len() != num_classes {
        return Err(Error::Bundle(format!(
            "{} class names for a model with {num_classes} classes",
            names.len()
        )));
    }
    Ok(())
}

/// What a bundle says about itself, apart from the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleHeader {
    pub model: ModelConfig,
    pub class_names: Vec<String>,
    /// Name of the dataset the model was trained on, e.g. `mnist`.
    pub dataset: String,
    /// The training configuration, as JSON (opaque here so the format does not depend on it).
    pub recipe: serde_json::Value,
    /// Final metrics, as JSON.
    pub metrics: serde_json::Value,
    /// Version of the crate that wrote it.
    pub created_by: String,
}

/// A model with everything needed to use it.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub header: BundleHeader,
    weights: Vec<u8>,
}

impl Bundle {
    pub fn new(model: &Model, header: BundleHeader) -> Result<Self> {
        check_classes(&header.class_names, header.model.num_classes())?;
        let weights = model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| Error::Bundle(e.to_string()))?;
        Ok(Self {
            header,
            weights: weights.to_vec(),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("bundle header serialises");
        seal(BUNDLE_MAGIC, BUNDLE_VERSION, &header, &[&self.weights])
    }

    /// Parses and checks a bundle; the weights are checked against the architecture by
    /// [`Bundle::model`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (header, sections) =
            unseal(bytes, BUNDLE_MAGIC, BUNDLE_VERSION, 1, "bundle").map_err(Error::Bundle)?;
        let header: BundleHeader = serde_json::from_slice(header)
            .map_err(|e| Error::Bundle(format!("unreadable header: {e}")))?;
        header
            .model
            .validate()
            .map_err(|e| Error::Bundle(e.to_string()))?;
        check_classes(&header.class_names, header.model.num_classes())?;
        Ok(Self {
            header,
            weights: sections[0].to_vec(),
        })
    }

    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::write_atomically(path, &self.to_bytes())
    }

    pub fn load(path: &std::path::Path) -> Result<Self> {
        Self::from_bytes(&crate::read_file(path)?)
    }

    /// The model on `device`, weights loaded. A bundle whose weights do not fit its declared
    /// architecture is an error.
    pub fn model(&self, device: &Device) -> Result<Model> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(self.weights.clone()))
            .map_err(|e| Error::Bundle(format!("unreadable weights: {e}")))?;
        let model = self.header.model.init(device)?;
        model
            .try_load_record(record)
            .map_err(|e| Error::Bundle(format!("weights do not match the architecture: {e}")))
    }

    pub fn weights_len(&self) -> usize {
        self.weights.len()
    }
}

pub const TEXT_BUNDLE_MAGIC: &[u8; 8] = b"RMPTTEXT";
pub const TEXT_BUNDLE_VERSION: u32 = 1;

/// What a text-classifier bundle says about itself. The sentence encoder is not inside (it is
/// 90 MB and shared); `encoder` names it and `encoder_fingerprint` pins its exact weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextBundleHeader {
    pub mlp: crate::text::classifier::MlpConfig,
    pub class_names: Vec<String>,
    pub encoder: String,
    pub encoder_fingerprint: String,
    pub recipe: serde_json::Value,
    pub metrics: serde_json::Value,
    pub created_by: String,
}

/// An MLP text classifier over sentence embeddings, with everything needed to use it.
#[derive(Debug, Clone)]
pub struct TextBundle {
    pub header: TextBundleHeader,
    weights: Vec<u8>,
}

impl TextBundle {
    pub fn new(model: &crate::text::classifier::Mlp, header: TextBundleHeader) -> Result<Self> {
        header.mlp.validate()?;
        check_classes(&header.class_names, header.mlp.num_classes)?;
        let weights = model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| Error::Bundle(e.to_string()))?;
        Ok(Self {
            header,
            weights: weights.to_vec(),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("bundle header serialises");
        seal(
            TEXT_BUNDLE_MAGIC,
            TEXT_BUNDLE_VERSION,
            &header,
            &[&self.weights],
        )
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (header, sections) = unseal(
            bytes,
            TEXT_BUNDLE_MAGIC,
            TEXT_BUNDLE_VERSION,
            1,
            "text bundle",
        )
        .map_err(Error::Bundle)?;
        let header: TextBundleHeader = serde_json::from_slice(header)
            .map_err(|e| Error::Bundle(format!("unreadable header: {e}")))?;
        header
            .mlp
            .validate()
            .map_err(|e| Error::Bundle(e.to_string()))?;
        check_classes(&header.class_names, header.mlp.num_classes)?;
        Ok(Self {
            header,
            weights: sections[0].to_vec(),
        })
    }

    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::write_atomically(path, &self.to_bytes())
    }

    pub fn load(path: &std::path::Path) -> Result<Self> {
        Self::from_bytes(&crate::read_file(path)?)
    }

    pub fn model(&self, device: &Device) -> Result<crate::text::classifier::Mlp> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(self.weights.clone()))
            .map_err(|e| Error::Bundle(format!("unreadable weights: {e}")))?;
        self.header
            .mlp
            .init(device)?
            .try_load_record(record)
            .map_err(|e| Error::Bundle(format!("weights do not match the architecture: {e}")))
    }
}
