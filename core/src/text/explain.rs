//! Explanations and robustness probes of one report, shared by the CLI and the browser.
//!
//! - [`explain`]: per-word importance as gradient × input on the word-piece vectors (one
//!   backward pass through the encoder): the log-probability of the explained class,
//!   differentiated with respect to each piece's word vector, dotted with that vector, and
//!   summed over the pieces of a word. Positive words support the class.
//! - [`probe`]: how far the report is from a different prediction, in two senses: the
//!   smallest L2 perturbation of its (unit) embedding that flips the MLP (bisection over the
//!   radius, each radius attacked with L2 PGD on the margin), and the fewest words, removed in
//!   order of importance, that flip the prediction on the re-encoded text.

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::argmax;
use crate::error::{Error, Result};
use crate::gradient::gradient_of;
use crate::text::classifier::{Mlp, predict_proba};
use crate::text::data::report_text;
use crate::text::encoder::SentenceEncoder;

/// The longest report accepted, in bytes (the longest OSHA report is under 10 kB).
pub const MAX_REPORT_BYTES: usize = 100_000;

/// The text a report is classified as (whitespace normalised), or an error for an empty or
/// oversized one.
pub fn prepare(text: &str) -> Result<String> {
    if text.len() > MAX_REPORT_BYTES {
        return Err(Error::invalid(
            "report",
            format!(
                "the text has {} bytes; at most {MAX_REPORT_BYTES} are accepted",
                text.len()
            ),
        ));
    }
    let text = report_text(text, "");
    if text.is_empty() {
        return Err(Error::invalid("report", "the text is empty"));
    }
    Ok(text)
}

/// A piece of the report's text: a word with its importance, or the text between words.
/// The segments of an explanation, concatenated, are the (normalised) report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Explanation {
    pub method: String,
    /// The class explained (the prediction unless another was asked for).
    pub class: usize,
    pub probabilities: Vec<f32>,
    pub segments: Vec<Segment>,
}

impl Explanation {
    /// The words with their scores, in text order.
    pub fn words(&self) -> impl Iterator<Item = (&str, f32)> {
        self.segments
            .iter()
            .filter_map(|s| s.score.map(|v| (s.text.as_str(), v)))
    }
}

/// Class probabilities of one report.
pub async fn classify(
    encoder: &SentenceEncoder,
    mlp: &Mlp,
    text: &str,
    device: &Device,
) -> Result<Vec<f32>> {
    let text = prepare(text)?;
    let x = embed_one(encoder, &text, device).await?;
    Ok(predict_proba(mlp, &[x], device).await?.remove(0))
}

/// The unit embedding of one prepared report.
async fn embed_one(encoder: &SentenceEncoder, text: &str, device: &Device) -> Result<Vec<f32>> {
    Ok(encoder
        .embed(&[text], 8192, device, &mut |_, _| {})
        .await?
        .remove(0))
}

/// Word importances for `class` (default: the predicted class) by gradient × input.
pub async fn explain(
    encoder: &SentenceEncoder,
    mlp: &Mlp,
    text: &str,
    class: Option<usize>,
    device: &Device,
) -> Result<Explanation> {
    let text = prepare(text)?;
    let embedding = embed_one(encoder, &text, device).await?;
    explain_embedded(encoder, mlp, &text, &embedding, class, device).await
}

/// [`explain`] of a prepared report whose embedding is already known.
async fn explain_embedded(
    encoder: &SentenceEncoder,
    mlp: &Mlp,
    text: &str,
    embedding: &[f32],
    class: Option<usize>,
    device: &Device,
) -> Result<Explanation> {
    let probabilities = predict_proba(mlp, &[embedding.to_vec()], device)
        .await?
        .remove(0);
    let class = match class {
        Some(c) if c >= probabilities.len() => {
            return Err(Error::invalid(
                "class",
                format!(
                    "{c} is out of range: the model has {} classes",
                    probabilities.len()
                ),
            ));
        }
        Some(c) => c,
        None => argmax(&probabilities),
    };
    let frozen = mlp.clone().freeze();
    let objective = |e: Tensor<2>| {
        log_softmax(frozen.forward(e), 1)
            .slice([0..1, class..class + 1])
            .reshape([1])
    };
    let scores = encoder.attribute(text, device, &objective).await?;
    let pieces = encoder.pieces(text)?;
    // Words: byte span from the first to the last of their pieces, score summed over them.
    let mut words: Vec<(u32, usize, usize, f32)> = Vec::new();
    for (i, word) in pieces.words.iter().enumerate() {
        let Some(word) = *word else { continue };
        let (start, end) = pieces.offsets[i];
        match words.last_mut() {
            Some(w) if w.0 == word => {
                w.2 = w.2.max(end);
                w.3 += scores[i];
            }
            _ => words.push((word, start, end, scores[i])),
        }
    }
    let mut segments = Vec::new();
    let mut at = 0;
    for (_, start, end, score) in words {
        if start < at || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        if start > at {
            segments.push(Segment {
                text: text[at..start].into(),
                score: None,
            });
        }
        segments.push(Segment {
            text: text[start..end].into(),
            score: Some(score),
        });
        at = end;
    }
    if at < text.len() {
        segments.push(Segment {
            text: text[at..].into(),
            score: None,
        });
    }
    Ok(Explanation {
        method: "gradient×input on word-piece vectors".into(),
        class,
        probabilities,
        segments,
    })
}

/// Settings of [`probe`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// Largest embedding perturbation tried (L2; the embedding has norm 1).
    pub max_radius: f32,
    /// Bisection steps on the radius.
    pub bisections: usize,
    /// PGD steps at each radius.
    pub pgd_steps: usize,
    /// At most this many words are removed.
    pub max_words: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            max_radius: 2.0,
            bisections: 12,
            pgd_steps: 20,
            max_words: 20,
        }
    }
}

/// The smallest embedding perturbation found that flips the prediction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingFlip {
    /// L2 norm of the perturbation (the embedding has norm 1).
    pub radius: f32,
    pub class: usize,
}

/// Words whose removal (together) flips the prediction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemovalFlip {
    pub words: Vec<String>,
    pub class: usize,
    /// The report with those words removed, as it was classified.
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub predicted: usize,
    pub probabilities: Vec<f32>,
    /// `None` when nothing within `max_radius` flips the prediction.
    pub embedding: Option<EmbeddingFlip>,
    /// `None` when removing the `max_words` most important words does not flip it.
    pub removal: Option<RemovalFlip>,
}

/// Whether an L2 PGD attack (margin loss, step 2.5·r/steps) within radius `r` of `x` changes
/// the prediction from `class`; returns the class it reaches.
async fn flips_within(
    mlp: &Mlp,
    x: &Tensor<2>,
    class: usize,
    r: f32,
    steps: usize,
) -> Result<Option<usize>> {
    let device = x.device();
    let k = mlp.num_classes();
    let onehot = Tensor::<2>::from_data(
        TensorData::new(
            (0..k)
                .map(|j| if j == class { 1f32 } else { 0.0 })
                .collect(),
            [1, k],
        ),
        &device,
    );
    let step = 2.5 * r / steps as f32;
    let mut xa = x.clone();
    for _ in 0..steps {
        let g = gradient_of(xa.clone(), |at| {
            let logits = mlp.forward(at);
            // Margin: best other logit minus the true one.
            let other = (logits.clone() - onehot.clone() * 1e9).max_dim(1);
            let own = (logits * onehot.clone()).sum_dim(1);
            (other - own).squeeze_dim::<1>(1)
        });
        let gn = g
            .clone()
            .square()
            .sum()
            .sqrt()
            .clamp_min(1e-12)
            .reshape([1, 1]);
        let moved = xa + g / gn * step;
        let d = moved - x.clone();
        let dn = d
            .clone()
            .square()
            .sum()
            .sqrt()
            .clamp_min(1e-12)
            .reshape([1, 1]);
        let factor = (dn.recip() * r).clamp_max(1.0);
        xa = (x.clone() + d * factor).detach();
        let predicted = argmax(&crate::tensor_io::read_floats(mlp.forward(xa.clone())).await?);
        if predicted != class {
            return Ok(Some(predicted));
        }
    }
    Ok(None)
}

/// The robustness probe of one report (see the module docs).
pub async fn probe(
    encoder: &SentenceEncoder,
    mlp: &Mlp,
    text: &str,
    config: &ProbeConfig,
    device: &Device,
) -> Result<Probe> {
    if !(config.max_radius.is_finite() && config.max_radius > 0.0)
        || config.pgd_steps == 0
        || config.bisections == 0
    {
        return Err(Error::invalid(
            "probe config",
            "needs max_radius > 0, pgd_steps ≥ 1 and bisections ≥ 1",
        ));
    }
    let text = prepare(text)?;
    let embedding = embed_one(encoder, &text, device).await?;
    let explanation = explain_embedded(encoder, mlp, &text, &embedding, None, device).await?;
    let class = explanation.class;
    let frozen = mlp.clone().freeze();
    let x = Tensor::<2>::from_data(
        TensorData::new(embedding.clone(), [1, embedding.len()]),
        device,
    );

    let mut embedding_flip = None;
    if let Some(c) = flips_within(&frozen, &x, class, config.max_radius, config.pgd_steps).await? {
        let (mut lo, mut hi, mut to) = (0f32, config.max_radius, c);
        for _ in 0..config.bisections {
            let mid = 0.5 * (lo + hi);
            match flips_within(&frozen, &x, class, mid, config.pgd_steps).await? {
                Some(c) => {
                    hi = mid;
                    to = c;
                }
                None => lo = mid,
            }
        }
        embedding_flip = Some(EmbeddingFlip {
            radius: hi,
            class: to,
        });
    }

    // Remove the most supportive words one more at a time; encode every candidate at once.
    let mut ranked: Vec<(usize, f32)> = explanation
        .segments
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.score.filter(|v| *v > 0.0).map(|v| (i, v)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(config.max_words);
    let mut candidates = Vec::new();
    for n in 1..=ranked.len() {
        let removed: Vec<usize> = ranked[..n].iter().map(|r| r.0).collect();
        let kept: String = explanation
            .segments
            .iter()
            .enumerate()
            .filter(|(i, _)| !removed.contains(i))
            .map(|(_, s)| s.text.as_str())
            .collect();
        candidates.push(report_text(&kept, ""));
    }
    let mut removal = None;
    if !candidates.is_empty() {
        let texts: Vec<&str> = candidates.iter().map(String::as_str).collect();
        let xs = encoder.embed(&texts, 8192, device, &mut |_, _| {}).await?;
        let probs = predict_proba(mlp, &xs, device).await?;
        if let Some(n) = probs.iter().position(|p| argmax(p) != class) {
            removal = Some(RemovalFlip {
                words: ranked[..=n]
                    .iter()
                    .map(|r| explanation.segments[r.0].text.clone())
                    .collect(),
                class: argmax(&probs[n]),
                text: candidates[n].clone(),
            });
        }
    }
    Ok(Probe {
        predicted: class,
        probabilities: explanation.probabilities,
        embedding: embedding_flip,
        removal,
    })
}
