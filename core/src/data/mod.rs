//! Image datasets: IDX (MNIST, Fashion-MNIST; gzipped or plain) and the CIFAR-10 binary
//! format, held in memory as `[0, 1]` floats, with seeded shuffling and batching.

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
const CIFAR_SIDE: usize = 32;
const CIFAR_RECORD: usize = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE;

/// How a training run splits its data (see [`ImageDataset::holdout`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutSpec {
    /// Use the first `limit` training images only.
    pub limit: Option<usize>,
    /// Images held out for validation.
    pub val_size: usize,
    /// Imbalance ratio of a long-tailed training subset.
    pub long_tail: Option<f32>,
    pub long_tail_seed: u64,
    /// The run's seed (draws the validation slice without a long tail).
    pub seed: u64,
}

/// The datasets Rampart knows how to find on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    Mnist,
    FashionMnist,
    Cifar10,
}

impl DatasetKind {
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "mnist" => Ok(Self::Mnist),
            "fashion-mnist" | "fashion_mnist" | "fmnist" => Ok(Self::FashionMnist),
            "cifar10" | "cifar-10" => Ok(Self::Cifar10),
            other => Err(Error::invalid(
                "dataset",
                format!("unknown dataset '{other}' (expected mnist, fashion-mnist or cifar10)"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
            Self::Cifar10 => "cifar10",
        }
    }

    /// Sub-folder of the data directory that holds this dataset.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
            Self::Cifar10 => "cifar10",
        }
    }

    pub fn class_names(self) -> Vec<String> {
        let names: &[&str] = match self {
            Self::Mnist => &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            Self::FashionMnist => &[
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
            Self::Cifar10 => &[
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ],
        };
        names.iter().map(|s| s.to_string()).collect()
    }
}

/// Which half of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

/// An in-memory image classification dataset, images in `[0, 1]`, layout `N×C×H×W`.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub class_names: Vec<String>,
}

impl ImageDataset {
    /// Builds a dataset, checking every invariant the rest of the crate relies on.
    pub fn new(
        images: Vec<f32>,
        labels: Vec<usize>,
        shape: [usize; 3],
        class_names: Vec<String>,
    ) -> Result<Self> {
        let [channels, height, width] = shape;
        let per = channels * height * width;
        if per == 0 {
            return Err(Error::invalid(
                "dataset",
                "image shape has a zero dimension",
            ));
        }
        if images.len() != labels.len() * per {
            return Err(Error::CountMismatch {
                what: "dataset".into(),
                images: images.len() / per,
                labels: labels.len(),
            });
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l >= class_names.len())
        {
            return Err(Error::LabelOutOfRange {
                what: "dataset".into(),
                index,
                label,
                num_classes: class_names.len(),
            });
        }
        if let Some(v) = images.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(Error::invalid(
                "dataset",
                format!("pixel value {v} outside [0, 1]"),
            ));
        }
        Ok(Self {
            images,
            labels,
            channels,
            height,
            width,
            class_names,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// The pixels of item `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// A new dataset holding the given items, in that order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Self {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: self.class_names.clone(),
        }
    }

    /// The first `n` items (all of them when `n` is larger).
    pub fn take(&self, n: usize) -> Self {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.subset(&idx)
    }

    /// Splits off the last `n` items of a seeded permutation, e.g. as a validation slice:
    /// returns `(rest, held_out)`.
    pub fn split_off(&self, n: usize, seed: u64) -> (Self, Self) {
        let order = shuffled(self.len(), seed);
        let cut = self.len().saturating_sub(n);
        (self.subset(&order[..cut]), self.subset(&order[cut..]))
    }

    /// Images and labels of the given items as tensors on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        let images = Tensor::from_data(
            TensorData::new(
                pixels,
                [indices.len(), self.channels, self.height, self.width],
            ),
            device,
        );
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        let labels = Tensor::from_data(TensorData::new(labels, [indices.len()]), device);
        (images, labels)
    }

    /// Item indices of each mini-batch of one epoch: a permutation drawn from
    /// `(seed, epoch)` alone, so an interrupted epoch can be replayed exactly.
    pub fn epoch_batches(&self, batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
        let order = shuffled(
            self.len(),
            seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        order
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }
}

/// Items per class, indexed by class.
pub fn class_counts(labels: &[usize], num_classes: usize) -> Vec<usize> {
    let mut counts = vec![0usize; num_classes];
    for &l in labels {
        counts[l] += 1;
    }
    counts
}

impl ImageDataset {
    /// Items per class.
    pub fn class_counts(&self) -> Vec<usize> {
        class_counts(&self.labels, self.num_classes())
    }

    /// SHA-256 of everything that shapes training on this set: shape, class names, labels
    /// and pixels, in order.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for d in [self.channels, self.height, self.width, self.labels.len()] {
            h.update((d as u64).to_le_bytes());
        }
        for name in &self.class_names {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
        }
        for &l in &self.labels {
            h.update((l as u64).to_le_bytes());
        }
        for v in &self.images {
            h.update(v.to_le_bytes());
        }
        format!("{:x}", h.finalize())
    }

    /// The training and validation sets of a run, carved out of a training split as `spec`
    /// says: the first `limit` images, then a seeded validation slice (kept balanced), then
    /// optionally a long-tailed subset of the rest.
    pub fn holdout(self, spec: &HoldoutSpec) -> Result<(Self, Self)> {
        let full = match spec.limit {
            Some(n) => self.take(n),
            None => self,
        };
        if spec.val_size >= full.len() {
            return Err(Error::invalid(
                "validation split",
                format!(
                    "holding out {} images leaves no training data ({} images)",
                    spec.val_size,
                    full.len()
                ),
            ));
        }
        // With a long tail, both draws follow its seed, so runs with different training seeds
        // share one long-tailed set.
        let split_seed = match spec.long_tail {
            Some(_) => spec.long_tail_seed,
            None => spec.seed,
        };
        let (train, val) = full.split_off(spec.val_size, split_seed ^ 0x5eed);
        let train = match spec.long_tail {
            Some(ratio) => train.long_tailed(ratio, spec.long_tail_seed ^ 0x7a11)?,
            None => train,
        };
        Ok((train, val))
    }

    /// A long-tailed subset with an exponential profile: class `c` keeps
    /// `⌊n_max · ratio^(−c/(K−1))⌋` items (at least 1), where `n_max` is the smallest class
    /// count, so every class can supply its share; class 0 is the head, class K−1 the tail
    /// (`n_max / ratio`). Which items each class keeps is a seeded draw; the subset is in the
    /// original order.
    pub fn long_tailed(&self, ratio: f32, seed: u64) -> Result<Self> {
        if !(ratio.is_finite() && ratio >= 1.0) {
            return Err(Error::invalid(
                "long-tailed subset",
                format!("imbalance ratio must be ≥ 1, got {ratio}"),
            ));
        }
        let k = self.num_classes();
        let counts = self.class_counts();
        let n_max = counts.iter().copied().min().unwrap_or(0);
        if n_max == 0 {
            return Err(Error::invalid(
                "long-tailed subset",
                "every class needs at least one item",
            ));
        }
        let mut keep = Vec::new();
        for c in 0..k {
            let share = ratio.powf(-(c as f32) / (k.max(2) - 1) as f32);
            let target = ((n_max as f32 * share).floor() as usize).max(1);
            let members: Vec<usize> = (0..self.len()).filter(|&i| self.labels[i] == c).collect();
            let order = shuffled(
                members.len(),
                seed ^ (c as u64).wrapping_mul(0xA24B_AED4_963E_E407),
            );
            keep.extend(order[..target].iter().map(|&j| members[j]));
        }
        keep.sort_unstable();
        Ok(self.subset(&keep))
    }

    /// Class-balanced batches for one epoch of `len()` draws: each draw picks a class
    /// uniformly, then an item of that class uniformly (random oversampling with
    /// replacement). Drawn from `(seed, epoch)` alone, like [`Self::epoch_batches`].
    pub fn balanced_batches(&self, batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
        let mut members = vec![Vec::new(); self.num_classes()];
        for (i, &l) in self.labels.iter().enumerate() {
            members[l].push(i);
        }
        let present: Vec<&Vec<usize>> = members.iter().filter(|m| !m.is_empty()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(
            seed ^ 0xBA1A_9CED ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let draws: Vec<usize> = (0..self.len())
            .map(|_| {
                let class = present[rng.random_range(0..present.len())];
                class[rng.random_range(0..class.len())]
            })
            .collect();
        draws
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }
}

/// A seeded permutation of `0..n`.
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    gunzip_if_needed(crate::read_file(path)?, &path.display().to_string())
}

/// The most bytes one gzipped file may expand to (1 GiB; MNIST's largest file is 47 MB).
pub const MAX_GUNZIPPED_BYTES: u64 = 1 << 30;

/// Gunzips bytes that start with the gzip magic; returns others unchanged.
pub fn gunzip_if_needed(raw: Vec<u8>, what: &str) -> Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        // Bounded: a small crafted stream can claim to expand to any size.
        flate2::read::GzDecoder::new(&raw[..])
            .take(MAX_GUNZIPPED_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::invalid(what, format!("corrupt gzip stream: {e}")))?;
        if out.len() as u64 > MAX_GUNZIPPED_BYTES {
            return Err(Error::invalid(
                what,
                format!("expands to more than {MAX_GUNZIPPED_BYTES} bytes"),
            ));
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize, what: &str) -> Result<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| Error::Truncated {
            what: what.into(),
            expected: at + 4,
            found: bytes.len(),
        })
}

/// Parses an IDX image file (magic 0x803): returns `(count, rows, cols, pixels as u8)`.
pub fn parse_idx_images(bytes: &[u8], what: &str) -> Result<(usize, usize, usize, Vec<u8>)> {
    let magic = be_u32(bytes, 0, what)?;
    if magic != IDX_IMAGES_MAGIC {
        return Err(Error::BadMagic {
            what: what.into(),
            found: magic,
            expected: IDX_IMAGES_MAGIC,
        });
    }
    let n = be_u32(bytes, 4, what)? as usize;
    let rows = be_u32(bytes, 8, what)? as usize;
    let cols = be_u32(bytes, 12, what)? as usize;
    let expected = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .and_then(|v| v.checked_add(16))
        .ok_or_else(|| Error::invalid(what, "header dimensions overflow"))?;
    if bytes.len() < expected {
        return Err(Error::Truncated {
            what: what.into(),
            expected,
            found: bytes.len(),
        });
    }
    Ok((n, rows, cols, bytes[16..expected].to_vec()))
}

/// Parses an IDX label file (magic 0x801).
pub fn parse_idx_labels(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    let magic = be_u32(bytes, 0, what)?;
    if magic != IDX_LABELS_MAGIC {
        return Err(Error::BadMagic {
            what: what.into(),
            found: magic,
            expected: IDX_LABELS_MAGIC,
        });
    }
    let n = be_u32(bytes, 4, what)? as usize;
    if bytes.len() < 8 + n {
        return Err(Error::Truncated {
            what: what.into(),
            expected: 8 + n,
            found: bytes.len(),
        });
    }
    Ok(bytes[8..8 + n].to_vec())
}

/// Builds a dataset from the bytes of an IDX image file and an IDX label file
/// (either may be gzipped).
pub fn idx_from_bytes(
    images: Vec<u8>,
    labels: Vec<u8>,
    class_names: Vec<String>,
    what: &str,
) -> Result<ImageDataset> {
    let images = gunzip_if_needed(images, what)?;
    let labels = gunzip_if_needed(labels, what)?;
    let (n, rows, cols, pixels) = parse_idx_images(&images, &format!("{what} images"))?;
    let labels = parse_idx_labels(&labels, &format!("{what} labels"))?;
    if labels.len() != n {
        return Err(Error::CountMismatch {
            what: what.into(),
            images: n,
            labels: labels.len(),
        });
    }
    check_labels(&labels, class_names.len(), what)?;
    ImageDataset::new(
        pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels.iter().map(|&l| l as usize).collect(),
        [1, rows, cols],
        class_names,
    )
}

fn check_labels(labels: &[u8], num_classes: usize, what: &str) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= num_classes) {
        Some(index) => Err(Error::LabelOutOfRange {
            what: what.into(),
            index,
            label: labels[index] as usize,
            num_classes,
        }),
        None => Ok(()),
    }
}

/// Parses CIFAR-10 binary records (`label byte + 3072 pixel bytes`, channel-major).
pub fn parse_cifar(bytes: &[u8], what: &str) -> Result<(Vec<u8>, Vec<u8>)> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(CIFAR_RECORD) {
        let records = bytes.len() / CIFAR_RECORD + 1;
        return Err(Error::Truncated {
            what: what.into(),
            expected: records * CIFAR_RECORD,
            found: bytes.len(),
        });
    }
    let n = bytes.len() / CIFAR_RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * (CIFAR_RECORD - 1));
    for rec in bytes.chunks_exact(CIFAR_RECORD) {
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    check_labels(&labels, 10, what)?;
    Ok((labels, pixels))
}

fn dataset_files(kind: DatasetKind, split: Split) -> Vec<&'static str> {
    match (kind, split) {
        (DatasetKind::Cifar10, Split::Train) => vec![
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
        ],
        (DatasetKind::Cifar10, Split::Test) => vec!["test_batch.bin"],
        (_, Split::Train) => vec!["train-images-idx3-ubyte", "train-labels-idx1-ubyte"],
        (_, Split::Test) => vec!["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
    }
}

/// Finds `name` or `name.gz` in `dir`.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.exists() {
        Ok(plain)
    } else if gz.exists() {
        Ok(gz)
    } else {
        Err(Error::MissingFile { path: gz })
    }
}

/// Loads a split of a dataset from `data_dir/<dataset folder>/`.
pub fn load(kind: DatasetKind, data_dir: &Path, split: Split) -> Result<ImageDataset> {
    let dir = data_dir.join(kind.folder());
    let files = dataset_files(kind, split);
    match kind {
        DatasetKind::Cifar10 => {
            let mut labels = Vec::new();
            let mut pixels = Vec::new();
            for name in files {
                let path = find_file(&dir, name)?;
                let bytes = read_maybe_gz(&path)?;
                let (l, p) = parse_cifar(&bytes, &path.display().to_string())?;
                labels.extend(l);
                pixels.extend(p);
            }
            ImageDataset::new(
                pixels.iter().map(|&p| p as f32 / 255.0).collect(),
                labels.iter().map(|&l| l as usize).collect(),
                [3, CIFAR_SIDE, CIFAR_SIDE],
                kind.class_names(),
            )
        }
        _ => {
            let images = find_file(&dir, files[0])?;
            let labels = find_file(&dir, files[1])?;
            let what = dir.display().to_string();
            let read = |p: &Path| {
                std::fs::read(p).map_err(|source| Error::Io {
                    path: p.into(),
                    source,
                })
            };
            idx_from_bytes(read(&images)?, read(&labels)?, kind.class_names(), &what)
        }
    }
}

/// The data directory: an explicit path, else `RAMPART_DATA`, else `../shared/data`.
pub fn resolve_data_dir(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("RAMPART_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}
