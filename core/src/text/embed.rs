//! Sentence embeddings with an on-disk cache: one file per encoder fingerprint, keyed by the
//! SHA-256 of the text, so every run after the first skips the encoder for texts it has seen.
//! Native only in practice (the browser has no filesystem and embeds what it is given).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use sha2::{Digest, Sha256};

use super::encoder::SentenceEncoder;
use crate::error::{Error, Result};

/// The cache folder: `$XDG_CACHE_HOME/rampart/embeddings`, else `~/.cache/rampart/embeddings`.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("rampart/embeddings")
}

/// Embeddings on disk as `[32-byte key][dim × f32 LE]` records.
pub struct EmbeddingCache {
    path: PathBuf,
    dim: usize,
    entries: HashMap<[u8; 32], Vec<f32>>,
    dirty: bool,
    /// The file existed but did not parse; it is ignored (and rewritten on the next save).
    pub damaged: bool,
}

impl EmbeddingCache {
    pub fn open(dir: &Path, fingerprint: &str, dim: usize) -> Result<Self> {
        let io = |source| Error::Io {
            path: dir.into(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let name = fingerprint.get(..32).unwrap_or(fingerprint);
        let path = dir.join(format!("{name}.emb"));
        let mut entries = HashMap::new();
        let mut damaged = false;
        if let Ok(bytes) = std::fs::read(&path) {
            let rec = 32 + 4 * dim;
            // A damaged cache is only a cache: drop it and recompute.
            if dim > 0 && bytes.len() % rec == 0 {
                for r in bytes.chunks_exact(rec) {
                    let (key, values) = r.split_at(32);
                    let key: [u8; 32] = key.try_into().expect("32 bytes");
                    let v = values
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    entries.insert(key, v);
                }
            } else {
                damaged = true;
            }
        }
        Ok(Self {
            path,
            dim,
            entries,
            dirty: false,
            damaged,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn key(text: &str) -> [u8; 32] {
        Sha256::digest(text.as_bytes()).into()
    }

    pub fn get(&self, text: &str) -> Option<&Vec<f32>> {
        self.entries.get(&Self::key(text))
    }

    pub fn insert(&mut self, text: &str, embedding: Vec<f32>) {
        self.entries.insert(Self::key(text), embedding);
        self.dirty = true;
    }

    /// Writes the cache atomically if anything was added.
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(self.entries.len() * (32 + 4 * self.dim));
        for (k, v) in &self.entries {
            bytes.extend_from_slice(k);
            for x in v {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        crate::write_atomically(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

/// An encoder with its cache, ready to embed.
pub struct CachedEncoder {
    pub encoder: SentenceEncoder,
    pub cache: EmbeddingCache,
    pub device: Device,
    /// Padded tokens encoded per batch.
    pub batch_tokens: usize,
}

impl CachedEncoder {
    /// Loads the encoder from `encoder_dir` and opens its cache in `cache_dir`.
    pub fn open(
        encoder_dir: &Path,
        cache_dir: &Path,
        batch_tokens: usize,
        device: &Device,
    ) -> Result<Self> {
        Self::new(
            SentenceEncoder::load(encoder_dir, device)?,
            cache_dir,
            batch_tokens,
            device,
        )
    }

    /// `encoder` with its cache in `cache_dir` (one file per fingerprint, so a fine-tuned
    /// encoder caches apart from its base).
    pub fn new(
        encoder: SentenceEncoder,
        cache_dir: &Path,
        batch_tokens: usize,
        device: &Device,
    ) -> Result<Self> {
        let cache = EmbeddingCache::open(cache_dir, &encoder.fingerprint, encoder.dim())?;
        Ok(Self {
            encoder,
            cache,
            device: device.clone(),
            batch_tokens,
        })
    }

    /// One unit embedding per text, encoding only the texts the cache lacks (each once) and
    /// saving them; `progress(done, total)` counts the encoder's windows.
    pub async fn embed(
        &mut self,
        texts: &[&str],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        let mut seen = HashSet::new();
        let missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| self.cache.get(t).is_none() && seen.insert(*t))
            .collect();
        if !missing.is_empty() {
            let fresh = self
                .encoder
                .embed(&missing, self.batch_tokens, &self.device, progress)
                .await?;
            for (t, v) in missing.iter().zip(fresh) {
                self.cache.insert(t, v);
            }
            self.cache.save()?;
        }
        Ok(texts
            .iter()
            .map(|t| self.cache.get(t).expect("embedded above").clone())
            .collect())
    }
}
