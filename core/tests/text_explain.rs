//! Explanations and robustness probes of one report (`text::explain`) on the real MiniLM
//! encoder with small random heads: the probe's embedding radius against the exact distance
//! to the decision boundary of a linear head, the word-removal flip re-checked by classifying
//! the reduced text, the explanation's segments rebuilding the text, and bad input. Needs the
//! shared model folder (present in CI); skipped without it.

use burn::tensor::{Device, Tensor, TensorData};
use rampart_core::data::resolve_data_dir;
use rampart_core::text::classifier::{Mlp, MlpConfig};
use rampart_core::text::encoder::SentenceEncoder;
use rampart_core::text::explain::{
    MAX_REPORT_BYTES, ProbeConfig, classify, explain, prepare, probe,
};

const REPORT: &str = "An employee was climbing a ladder to reach the roof of the warehouse \
    when he lost his balance and fell 12 feet to the concrete floor, fracturing his hip.";

fn encoder() -> Option<SentenceEncoder> {
    let dir = resolve_data_dir(None).join("../models/all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").exists() {
        eprintln!("skipped: no MiniLM under {}", dir.display());
        return None;
    }
    Some(SentenceEncoder::load(&dir, &Device::flex()).unwrap())
}

fn head(hidden: Vec<usize>, classes: usize) -> Mlp {
    MlpConfig {
        input: 384,
        hidden,
        num_classes: classes,
        dropout: 0.0,
    }
    .init(&Device::flex())
    .unwrap()
}

fn embed(e: &SentenceEncoder, text: &str) -> Vec<f32> {
    let d = Device::flex();
    pollster::block_on(e.embed(&[&prepare(text).unwrap()], 4096, &d, &mut |_, _| {}))
        .unwrap()
        .remove(0)
}

/// For a linear two-class head the smallest L2 change of the embedding that flips it is
/// |z₀ − z₁| / ‖w₀ − w₁‖; the gradient of z₁ − z₀ is w₁ − w₀.
fn exact_radius(m: &Mlp, x: &[f32]) -> f32 {
    let d = Device::flex();
    let t = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [1, x.len()]), &d)
        .autodiff()
        .require_grad();
    let z = m.forward(t.clone());
    let diff = z.clone().slice([0..1, 1..2]) - z.slice([0..1, 0..1]);
    let gap = diff.clone().into_data().try_to_vec::<f32>().unwrap()[0];
    let grads = diff.sum().backward();
    let g = t
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    gap.abs() / g.iter().map(|v| v * v).sum::<f32>().sqrt()
}

#[test]
fn probe_radius_matches_the_exact_boundary_distance_of_a_linear_head() {
    let Some(e) = encoder() else { return };
    let d = Device::flex();
    let x = embed(&e, REPORT);
    let mut checked = 0;
    for _ in 0..4 {
        let m = head(vec![], 2);
        let exact = exact_radius(&m, &x);
        let config = ProbeConfig {
            max_radius: 2.0,
            max_words: 0,
            ..Default::default()
        };
        let p = pollster::block_on(probe(&e, &m, REPORT, &config, &d)).unwrap();
        match p.embedding {
            Some(f) => {
                eprintln!("probe radius {} vs exact {exact}", f.radius);
                // Bisection resolves 2/2¹² ≈ 5e-4; PGD on a linear head reaches the boundary.
                assert!(
                    (f.radius - exact).abs() < 2e-3 + 0.02 * exact,
                    "probe radius {} vs exact {exact}",
                    f.radius
                );
                assert_ne!(f.class, p.predicted);
                checked += 1;
            }
            None => assert!(exact > 2.0, "no flip found but the boundary is at {exact}"),
        }
    }
    assert!(checked > 0);
    // A nonlinear 7-class head has no exact reference: the probe must run and stay within its
    // search range.
    let m = head(vec![32], 7);
    let p = pollster::block_on(probe(&e, &m, REPORT, &ProbeConfig::default(), &d)).unwrap();
    if let Some(f) = &p.embedding {
        assert!(f.radius > 0.0 && f.radius <= 2.0);
    }
}

#[test]
fn word_removal_flip_is_confirmed_by_classifying_the_reduced_text() {
    let Some(e) = encoder() else { return };
    let d = Device::flex();
    let x = embed(&e, REPORT);
    // Linear heads whose boundary passes close to the report, so that removing words can
    // cross it.
    let mut probed = 0;
    let mut found = 0;
    for _ in 0..200 {
        let m = head(vec![], 2);
        if exact_radius(&m, &x) > 0.03 {
            continue;
        }
        probed += 1;
        let p = pollster::block_on(probe(&e, &m, REPORT, &ProbeConfig::default(), &d)).unwrap();
        let clean = pollster::block_on(classify(&e, &m, REPORT, &d)).unwrap();
        assert_eq!(clean, p.probabilities);
        if let Some(r) = p.removal {
            let probs = pollster::block_on(classify(&e, &m, &r.text, &d)).unwrap();
            let best = (0..probs.len())
                .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
                .unwrap();
            assert_eq!(best, r.class);
            assert_ne!(best, p.predicted);
            assert!(!r.words.is_empty() && r.words.len() <= 20);
            for w in &r.words {
                assert!(
                    REPORT.contains(w.as_str()),
                    "removed word {w} is not in the report"
                );
            }
            found += 1;
        }
        if found == 3 {
            break;
        }
    }
    eprintln!("{found} of {probed} near-boundary heads flipped by word removal");
    assert!(
        found > 0,
        "no head was flipped by removing words ({probed} probed)"
    );
}

#[test]
fn explanation_segments_rebuild_the_report_and_bad_input_is_refused() {
    let Some(e) = encoder() else { return };
    let d = Device::flex();
    let m = head(vec![16], 4);
    let text = format!("  {REPORT}\n  Employee's hip was fractured. ");
    let x = pollster::block_on(explain(&e, &m, &text, None, &d)).unwrap();
    let rebuilt: String = x.segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(rebuilt, prepare(&text).unwrap());
    let words: Vec<_> = x.words().collect();
    assert!(words.iter().any(|(w, _)| *w == "ladder"));
    assert!(
        words.iter().any(|(w, _)| *w == "'"),
        "BERT splits punctuation into words"
    );
    assert!(words.iter().all(|(_, v)| v.is_finite()));
    assert!(words.iter().any(|(_, v)| *v != 0.0));
    let best = (0..4)
        .max_by(|&a, &b| x.probabilities[a].total_cmp(&x.probabilities[b]))
        .unwrap();
    assert_eq!(x.class, best);
    // Explaining another class flips the sign of nothing in general, but must run and say so.
    let other = pollster::block_on(explain(&e, &m, &text, Some((best + 1) % 4), &d)).unwrap();
    assert_eq!(other.class, (best + 1) % 4);

    let err = |r: rampart_core::error::Result<_>| format!("{}", r.map(|_: ()| ()).unwrap_err());
    let empty = pollster::block_on(explain(&e, &m, " \n\t ", None, &d)).map(|_| ());
    assert!(err(empty).contains("empty"));
    let huge = "word ".repeat(MAX_REPORT_BYTES / 4);
    let big = pollster::block_on(classify(&e, &m, &huge, &d)).map(|_| ());
    assert!(err(big).contains("at most"));
    let class = pollster::block_on(explain(&e, &m, REPORT, Some(9), &d)).map(|_| ());
    assert!(err(class).contains("out of range"));
}
