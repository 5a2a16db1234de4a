//! Loaders read IDX (plain and gzipped) and CIFAR-10 binary files, and reject each kind of
//! damaged file with its own error.

use std::io::Write;
use std::path::Path;

use rampart_core::Error;
use rampart_core::data::{self, DatasetKind, Split};

fn idx_images(n: u32, rows: u32, cols: u32, fill: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for v in [n, rows, cols] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend((0..(n * rows * cols) as usize).map(fill));
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_mnist(dir: &Path, images: &[u8], labels: &[u8], zipped: bool) {
    let d = dir.join("mnist");
    std::fs::create_dir_all(&d).unwrap();
    let (img, lab) = if zipped {
        (
            d.join("t10k-images-idx3-ubyte.gz"),
            d.join("t10k-labels-idx1-ubyte.gz"),
        )
    } else {
        (
            d.join("t10k-images-idx3-ubyte"),
            d.join("t10k-labels-idx1-ubyte"),
        )
    };
    std::fs::write(img, if zipped { gz(images) } else { images.to_vec() }).unwrap();
    std::fs::write(lab, if zipped { gz(labels) } else { labels.to_vec() }).unwrap();
}

#[test]
fn reads_plain_and_gzipped_idx() {
    for zipped in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(
            dir.path(),
            &idx_images(3, 2, 2, |i| (i * 20) as u8),
            &idx_labels(&[7, 0, 9]),
            zipped,
        );
        let d = data::load(DatasetKind::Mnist, dir.path(), Split::Test).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.shape(), [1, 2, 2]);
        assert_eq!(d.labels, vec![7, 0, 9]);
        assert_eq!(
            d.image(1),
            &[80.0 / 255.0, 100.0 / 255.0, 120.0 / 255.0, 140.0 / 255.0]
        );
    }
}

#[test]
fn damaged_idx_files_get_their_own_errors() {
    let good_images = idx_images(3, 2, 2, |_| 1);
    let good_labels = idx_labels(&[1, 2, 3]);
    type Case = (Vec<u8>, Vec<u8>, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        (vec![0, 0, 8, 2, 0, 0, 0, 0], good_labels.clone(), |e| {
            matches!(e, Error::BadMagic { .. })
        }),
        (good_images.clone(), idx_images(3, 1, 1, |_| 0), |e| {
            matches!(e, Error::BadMagic { .. })
        }),
        (
            good_images[..good_images.len() - 1].to_vec(),
            good_labels.clone(),
            |e| matches!(e, Error::Truncated { .. }),
        ),
        (good_images[..10].to_vec(), good_labels.clone(), |e| {
            matches!(e, Error::Truncated { .. })
        }),
        (good_images.clone(), good_labels[..9].to_vec(), |e| {
            matches!(e, Error::Truncated { .. })
        }),
        (good_images.clone(), idx_labels(&[1, 2]), |e| {
            matches!(e, Error::CountMismatch { .. })
        }),
        (good_images.clone(), idx_labels(&[1, 10, 2]), |e| {
            matches!(
                e,
                Error::LabelOutOfRange {
                    index: 1,
                    label: 10,
                    ..
                }
            )
        }),
        (gz(&good_images)[..20].to_vec(), good_labels.clone(), |e| {
            matches!(e, Error::Invalid { .. })
        }),
    ];
    for (i, (images, labels, expected)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(dir.path(), &images, &labels, false);
        let err = data::load(DatasetKind::Mnist, dir.path(), Split::Test).unwrap_err();
        assert!(expected(&err), "case {i}: unexpected error {err}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = data::load(DatasetKind::FashionMnist, dir.path(), Split::Train).unwrap_err();
    assert!(matches!(err, Error::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
}

fn cifar_records(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        b.push(l);
        b.extend((0..3072).map(|j| ((i * 7 + j) % 256) as u8));
    }
    b
}

#[test]
fn reads_cifar10_binary_layout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cifar10");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("test_batch.bin"), cifar_records(&[3, 9])).unwrap();
    let set = data::load(DatasetKind::Cifar10, dir.path(), Split::Test).unwrap();
    assert_eq!(set.shape(), [3, 32, 32]);
    assert_eq!(set.labels, vec![3, 9]);
    // Channel-major: the green plane of image 1 starts at byte 1024 of its record.
    assert_eq!(set.image(1)[1024], ((7 + 1024) % 256) as f32 / 255.0);

    std::fs::write(d.join("test_batch.bin"), &cifar_records(&[3, 9])[..5000]).unwrap();
    assert!(matches!(
        data::load(DatasetKind::Cifar10, dir.path(), Split::Test),
        Err(Error::Truncated { .. })
    ));
    std::fs::write(d.join("test_batch.bin"), cifar_records(&[3, 12])).unwrap();
    assert!(matches!(
        data::load(DatasetKind::Cifar10, dir.path(), Split::Test),
        Err(Error::LabelOutOfRange {
            index: 1,
            label: 12,
            ..
        })
    ));
}

#[test]
fn epoch_batches_are_a_seeded_permutation() {
    let set = rampart_core::data::ImageDataset::new(
        vec![0.5; 10 * 4],
        (0..10).map(|i| i % 2).collect(),
        [1, 2, 2],
        vec!["a".into(), "b".into()],
    )
    .unwrap();
    let a = set.epoch_batches(3, 1, 0);
    assert_eq!(a, set.epoch_batches(3, 1, 0));
    assert_ne!(a, set.epoch_batches(3, 1, 1));
    let mut all: Vec<usize> = a.concat();
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
}

fn four_classes(per_class: usize) -> rampart_core::data::ImageDataset {
    let n = 4 * per_class;
    rampart_core::data::ImageDataset::new(
        (0..n * 4).map(|i| (i % 7) as f32 / 7.0).collect(),
        (0..n).map(|i| i % 4).collect(),
        [1, 2, 2],
        vec!["a".into(), "b".into(), "c".into(), "d".into()],
    )
    .unwrap()
}

#[test]
fn long_tailed_subset_follows_the_exponential_profile() {
    let set = four_classes(100);
    let lt = set.long_tailed(10.0, 3).unwrap();
    // ⌊100 · 10^(−c/3)⌋: 100, 46.4, 21.5, 10.
    assert_eq!(lt.class_counts(), vec![100, 46, 21, 10]);
    assert_eq!(lt.labels, set.long_tailed(10.0, 3).unwrap().labels);
    assert_eq!(lt.images, set.long_tailed(10.0, 3).unwrap().images);
    assert_ne!(lt.images, set.long_tailed(10.0, 4).unwrap().images);
    // Ratio 1 keeps everything.
    assert_eq!(set.long_tailed(1.0, 0).unwrap().len(), set.len());
    for bad in [0.5, f32::NAN, f32::INFINITY] {
        assert!(set.long_tailed(bad, 0).is_err(), "ratio {bad} accepted");
    }
}

#[test]
fn balanced_batches_draw_every_class_alike() {
    let lt = four_classes(100).long_tailed(10.0, 3).unwrap();
    assert_eq!(lt.balanced_batches(16, 1, 0), lt.balanced_batches(16, 1, 0));
    assert_ne!(lt.balanced_batches(16, 1, 0), lt.balanced_batches(16, 1, 1));
    let mut drawn = [0usize; 4];
    let epochs = 20;
    for e in 0..epochs {
        let b = lt.balanced_batches(16, 1, e);
        assert_eq!(b.concat().len(), lt.len());
        for i in b.concat() {
            drawn[lt.labels[i]] += 1;
        }
    }
    // 3,540 draws, a quarter per class expected (sd ≈ 26): allow ±20 %.
    let expected = (epochs * lt.len()) as f64 / 4.0;
    for (c, &d) in drawn.iter().enumerate() {
        assert!(
            (d as f64 - expected).abs() < 0.2 * expected,
            "class {c}: {d} draws, expected {expected}"
        );
    }
}
