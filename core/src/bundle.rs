//! Bundles: one versioned, checksummed file with a model's architecture, weights, class
//! names, training recipe and metrics. Loadable from bytes, because the browser has no
//! filesystem; every way a file can be damaged maps to an [`Error::Bundle`].
//!
//! Layout (little-endian): `magic[8] | version u32 | header_len u64 | header (JSON) |
//! weights_len u64 | weights (burnpack) | sha256[32]` — the digest covers all preceding bytes.

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, DType, Device};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::{seal, unseal};
use crate::model::{Model, ModelConfig};

pub const BUNDLE_MAGIC: &[u8; 8] = b"RAMPART\0";
pub const BUNDLE_VERSION: u32 = 1;

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

impl BundleHeader {
    /// The training method's name from the recipe (`unknown` for a recipe without one).
    pub fn training_method(&self) -> &str {
        self.recipe
            .get("method")
            .and_then(|m| m.get("name"))
            .and_then(|m| m.as_str())
            .unwrap_or("unknown")
    }
}

/// A module's weights as burnpack bytes.
pub(crate) fn record_bytes<M: Module>(model: &M) -> Result<Vec<u8>> {
    Ok(model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Bundle(e.to_string()))?
        .to_vec())
}

/// Refuses a weights section Burn's record load would panic on: every tensor must be f32
/// (Rampart's models hold nothing else) and its bytes must be exactly its shape's worth.
pub(crate) fn check_record(bytes: &[u8]) -> std::result::Result<(), String> {
    let tensors = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .and_then(burn_pack::Reader::into_tensors)
        .map_err(|e| format!("unreadable weights: {e}"))?;
    for t in &tensors {
        if t.dtype != DType::F32 {
            return Err(format!(
                "weights do not match the architecture: tensor {} is {:?}, not f32",
                t.name, t.dtype
            ));
        }
        let bytes = t
            .shape
            .iter()
            .try_fold(4usize, |n, &d| n.checked_mul(d))
            .filter(|&n| n == t.byte_len());
        if bytes.is_none() {
            return Err(format!(
                "weights do not match the architecture: tensor {} holds {} bytes for shape {:?}",
                t.name,
                t.byte_len(),
                &t.shape[..]
            ));
        }
    }
    Ok(())
}

/// `module` with the weights of `bytes`; weights that do not fit it are an error.
pub(crate) fn load_record<M: Module>(module: M, bytes: &[u8]) -> Result<M> {
    // Burn 0.22.1 panics inside the load when a tensor of the record has an integer dtype
    // where the module holds floats (found by core/tests/fuzz.rs). Checked first, so that
    // wasm, where a panic aborts, never reaches it.
    check_record(bytes).map_err(Error::Bundle)?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| Error::Bundle(format!("unreadable weights: {e}")))?;
    // Any other panic of the load stays an error natively.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        module.try_load_record(record)
    }))
    .map_err(|_| {
        Error::Bundle("weights do not match the architecture: a tensor of the wrong type".into())
    })?
    .map_err(|e| Error::Bundle(format!("weights do not match the architecture: {e}")))
}

/// Opens a sealed bundle: its parsed header and its one weights section.
fn open<H: serde::de::DeserializeOwned>(
    bytes: &[u8],
    magic: &[u8; 8],
    version: u32,
    what: &str,
) -> Result<(H, Vec<u8>)> {
    let (header, sections) = unseal(bytes, magic, version, 1, what).map_err(Error::Bundle)?;
    let header = serde_json::from_slice(header)
        .map_err(|e| Error::Bundle(format!("unreadable header: {e}")))?;
    Ok((header, sections[0].to_vec()))
}

/// Refuses weights too short for the declared architecture before the model is allocated.
fn check_weight_bytes(needed: u64, present: usize) -> Result<()> {
    if (present as u64) < needed {
        return Err(Error::Bundle(format!(
            "the header's architecture needs at least {needed} bytes of weights, the file holds {present}"
        )));
    }
    Ok(())
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
        Ok(Self {
            header,
            weights: record_bytes(model)?,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("bundle header serialises");
        seal(BUNDLE_MAGIC, BUNDLE_VERSION, &header, &[&self.weights])
    }

    /// Parses and checks a bundle; the weights are checked against the architecture by
    /// [`Bundle::model`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (header, weights) =
            open::<BundleHeader>(bytes, BUNDLE_MAGIC, BUNDLE_VERSION, "bundle")?;
        header
            .model
            .validate()
            .map_err(|e| Error::Bundle(e.to_string()))?;
        check_classes(&header.class_names, header.model.num_classes())?;
        Ok(Self { header, weights })
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
        check_weight_bytes(self.header.model.min_weight_bytes(), self.weights.len())?;
        load_record(self.header.model.init(device)?, &self.weights)
    }

    pub fn weights_len(&self) -> usize {
        self.weights.len()
    }
}

pub const TEXT_BUNDLE_MAGIC: &[u8; 8] = b"RMPTTEXT";
/// Version 1: the head only. Version 2: the head and the fine-tuned top layers of the encoder
/// (a second weights section); written only for a fine-tuned classifier, so bundles of frozen
/// encoders stay readable by earlier releases.
pub const TEXT_BUNDLE_VERSION: u32 = 1;
pub const TEXT_BUNDLE_VERSION_TUNED: u32 = 2;

/// The encoder's top layers that a fine-tuned text bundle replaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTunedLayers {
    /// How many top layers the bundle holds.
    pub layers: usize,
    /// Fingerprint of the base encoder they replace layers of.
    pub base_fingerprint: String,
}

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
    /// Present when the encoder was fine-tuned: `encoder_fingerprint` is then the fine-tuned
    /// encoder's (base with these layers replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tuned: Option<FineTunedLayers>,
}

impl TextBundleHeader {
    /// Refuses an encoder whose embeddings the classifier was not trained on: another
    /// fingerprint, or another width.
    pub fn check_encoder(&self, encoder: &crate::text::encoder::SentenceEncoder) -> Result<()> {
        let short = |f: &str| f.get(..12).unwrap_or(f).to_string();
        if encoder.fingerprint != self.encoder_fingerprint {
            return Err(Error::Bundle(format!(
                "the encoder files do not match the bundle: it was trained on {} with fingerprint \
                 {}…, these files have fingerprint {}…",
                self.encoder,
                short(&self.encoder_fingerprint),
                short(&encoder.fingerprint)
            )));
        }
        if encoder.dim() != self.mlp.input {
            return Err(Error::Bundle(format!(
                "the encoder gives {}-d embeddings, the classifier takes {}",
                encoder.dim(),
                self.mlp.input
            )));
        }
        Ok(())
    }
}

/// An MLP text classifier over sentence embeddings, with everything needed to use it.
#[derive(Debug, Clone)]
pub struct TextBundle {
    pub header: TextBundleHeader,
    weights: Vec<u8>,
    /// The fine-tuned encoder layers (empty when the encoder is frozen).
    encoder_weights: Vec<u8>,
}

impl TextBundle {
    pub fn new(model: &crate::text::classifier::Mlp, header: TextBundleHeader) -> Result<Self> {
        if header.fine_tuned.is_some() {
            return Err(Error::Bundle(
                "a fine-tuned bundle needs its layers: use TextBundle::fine_tuned".into(),
            ));
        }
        header.mlp.validate()?;
        check_classes(&header.class_names, header.mlp.num_classes)?;
        Ok(Self {
            header,
            weights: record_bytes(model)?,
            encoder_weights: Vec::new(),
        })
    }

    /// A bundle of a fine-tuned classifier: the head, and the encoder's top layers (bottom
    /// first) that replace the base encoder's (`header.fine_tuned` is filled in here).
    pub fn fine_tuned(
        model: &crate::text::classifier::Mlp,
        layers: &[crate::text::encoder::BertLayer],
        base_fingerprint: &str,
        mut header: TextBundleHeader,
    ) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::Bundle(
                "a fine-tuned bundle needs at least one layer".into(),
            ));
        }
        header.fine_tuned = None;
        let mut bundle = Self::new(model, header)?;
        bundle.header.fine_tuned = Some(FineTunedLayers {
            layers: layers.len(),
            base_fingerprint: base_fingerprint.to_string(),
        });
        bundle.encoder_weights = record_bytes(&layers.to_vec())?;
        Ok(bundle)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("bundle header serialises");
        if self.header.fine_tuned.is_some() {
            seal(
                TEXT_BUNDLE_MAGIC,
                TEXT_BUNDLE_VERSION_TUNED,
                &header,
                &[&self.weights, &self.encoder_weights],
            )
        } else {
            seal(
                TEXT_BUNDLE_MAGIC,
                TEXT_BUNDLE_VERSION,
                &header,
                &[&self.weights],
            )
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let tuned = bytes.len() >= 12
            && bytes[8..12] == TEXT_BUNDLE_VERSION_TUNED.to_le_bytes()
            && &bytes[..8] == TEXT_BUNDLE_MAGIC;
        let (version, sections) = if tuned {
            (TEXT_BUNDLE_VERSION_TUNED, 2)
        } else {
            (TEXT_BUNDLE_VERSION, 1)
        };
        let (header, parts) = unseal(bytes, TEXT_BUNDLE_MAGIC, version, sections, "text bundle")
            .map_err(Error::Bundle)?;
        let header: TextBundleHeader = serde_json::from_slice(header)
            .map_err(|e| Error::Bundle(format!("unreadable header: {e}")))?;
        header
            .mlp
            .validate()
            .map_err(|e| Error::Bundle(e.to_string()))?;
        check_classes(&header.class_names, header.mlp.num_classes)?;
        match (&header.fine_tuned, tuned) {
            (Some(f), true) if f.layers > 0 => {}
            (None, false) => {}
            _ => {
                return Err(Error::Bundle(
                    "the header's fine-tuned layers do not match the bundle's version".into(),
                ));
            }
        }
        Ok(Self {
            header,
            weights: parts[0].to_vec(),
            encoder_weights: parts.get(1).map(|p| p.to_vec()).unwrap_or_default(),
        })
    }

    /// The encoder the classifier runs on: `base` itself for a frozen encoder, else `base`
    /// with the bundle's fine-tuned top layers. Refuses a base other than the one trained on.
    pub async fn encoder(
        &self,
        base: crate::text::encoder::SentenceEncoder,
        device: &Device,
    ) -> Result<crate::text::encoder::SentenceEncoder> {
        let encoder = match &self.header.fine_tuned {
            None => base,
            Some(f) => {
                if base.fingerprint != f.base_fingerprint {
                    let short = |f: &str| f.get(..12).unwrap_or(f).to_string();
                    return Err(Error::Bundle(format!(
                        "the encoder files do not match the bundle: its layers were fine-tuned \
                         from {} with fingerprint {}…, these files have fingerprint {}…",
                        self.header.encoder,
                        short(&f.base_fingerprint),
                        short(&base.fingerprint)
                    )));
                }
                if f.layers > base.num_layers() {
                    return Err(Error::Bundle(format!(
                        "the bundle replaces {} layers of an encoder with {}",
                        f.layers,
                        base.num_layers()
                    )));
                }
                let layers =
                    load_record(base.top_layers(f.layers, device)?, &self.encoder_weights)?;
                base.with_top_layers(layers).await?
            }
        };
        self.header.check_encoder(&encoder)?;
        Ok(encoder)
    }

    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::write_atomically(path, &self.to_bytes())
    }

    pub fn load(path: &std::path::Path) -> Result<Self> {
        Self::from_bytes(&crate::read_file(path)?)
    }

    pub fn model(&self, device: &Device) -> Result<crate::text::classifier::Mlp> {
        let needed = self.header.mlp.weight_count().unwrap_or(u64::MAX);
        check_weight_bytes(needed.saturating_mul(4), self.weights.len())?;
        load_record(self.header.mlp.init(device)?, &self.weights)
    }
}
