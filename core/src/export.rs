//! Weights in the PyTorch twins' names and layouts (`bench/twins.py`), as safetensors, so
//! any PyTorch tool can evaluate a Rampart model.

use std::collections::BTreeMap;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::model::Model;

/// The model's weights as a safetensors file (f32, little-endian), with the model
/// architecture in the metadata under `rampart.model`.
pub fn to_safetensors(model: &Model, model_config_json: &str) -> Result<Vec<u8>> {
    let weights = model.named_weights();
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .into_iter()
        .map(|(name, shape, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let views = raw
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::invalid("export", e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = BTreeMap::new();
    meta.insert("rampart.model".to_string(), model_config_json.to_string());
    safetensors::serialize(views, Some(meta.into_iter().collect()))
        .map_err(|e| Error::invalid("export", e.to_string()))
}
