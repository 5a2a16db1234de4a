//! The Burn MiniLM encoder against values computed independently with PyTorch
//! (`bench/minilm_reference.py` wrote `fixtures/minilm_reference.json`): the shared README's
//! reference cosines, and real reports — short ones against sentence-transformers itself,
//! long ones against the same windowing rule on Hugging Face's BertModel. Tolerance: cosine
//! within 1e-4. Needs the shared model folder (present in CI).

use rampart_core::data::resolve_data_dir;
use rampart_core::text::encoder::{SentenceEncoder, cosine};

fn encoder() -> Option<SentenceEncoder> {
    let dir = resolve_data_dir(None).join("../models/all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").exists() {
        eprintln!("skipped: no MiniLM under {}", dir.display());
        return None;
    }
    Some(SentenceEncoder::load(&dir, &burn::tensor::Device::flex()).unwrap())
}

fn embed(e: &SentenceEncoder, texts: &[&str]) -> Vec<Vec<f32>> {
    pollster::block_on(e.embed(texts, 4096, &burn::tensor::Device::flex(), &mut |_, _| {})).unwrap()
}

#[test]
fn matches_the_pytorch_reference() {
    let Some(e) = encoder() else { return };
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();

    // The shared README's values (3 decimals) and the reference's (full precision).
    let readme = [0.719f32, -0.054];
    for (pair, want) in fixture["pairs"].as_array().unwrap().iter().zip(readme) {
        let v = embed(
            &e,
            &[pair["a"].as_str().unwrap(), pair["b"].as_str().unwrap()],
        );
        let c = cosine(&v[0], &v[1]);
        let reference = pair["cosine"].as_f64().unwrap() as f32;
        assert!(
            (c - reference).abs() < 1e-4,
            "cosine {c} vs reference {reference}"
        );
        assert!((c - want).abs() < 5e-4, "cosine {c} vs README {want}");
    }

    let reports = fixture["reports"].as_array().unwrap();
    let texts: Vec<&str> = reports
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    let ours = embed(&e, &texts);
    let mut long = 0;
    for (r, v) in reports.iter().zip(&ours) {
        let reference: Vec<f32> = r["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let c = cosine(v, &reference);
        assert!(
            1.0 - c < 1e-4,
            "report {}: cosine {c} to the reference",
            r["index"]
        );
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        if r["word_pieces"].as_u64().unwrap() > 254 {
            long += 1;
        }
    }
    assert!(
        long >= 1,
        "the fixture must hold a report longer than one window"
    );
}

#[test]
fn a_batch_embeds_like_its_texts_one_by_one() {
    let Some(e) = encoder() else { return };
    let texts = [
        "Employee fell from a ladder while painting.",
        "A forklift struck a worker in the warehouse and he was hospitalized.",
        "",
        "FIRE IN THE PAINT BOOTH",
    ];
    // A small token budget forces several batches with different padding.
    let together =
        pollster::block_on(e.embed(&texts, 40, &burn::tensor::Device::flex(), &mut |_, _| {}))
            .unwrap();
    for (t, v) in texts.iter().zip(&together) {
        let alone = &embed(&e, &[t])[0];
        let c = cosine(v, alone);
        assert!(1.0 - c < 1e-5, "{t:?}: cosine {c}");
    }
}

/// The host kernel (packed windows, no padding) against Burn's padded operations on the same
/// weights: every component within 2e-5 of a unit vector, on short texts, an empty one and
/// reports longer than one window (the PyTorch fixture's), batched together with unequal
/// lengths.
#[test]
fn the_host_kernel_matches_burns_operations() {
    let Some(e) = encoder() else { return };
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    let mut texts: Vec<&str> = fixture["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    texts.extend([
        "",
        "Fall.",
        "A worker was struck by a falling beam; he died.",
    ]);
    let d = burn::tensor::Device::flex();
    let host = pollster::block_on(e.embed(&texts, 2048, &d, &mut |_, _| {})).unwrap();
    let burn = pollster::block_on(e.embed_with_burn(&texts, 2048, &d, &mut |_, _| {})).unwrap();
    for (t, (a, b)) in texts.iter().zip(host.iter().zip(&burn)) {
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 2e-5,
            "{:?}: largest difference {worst}",
            &t[..t.len().min(40)]
        );
    }
}
