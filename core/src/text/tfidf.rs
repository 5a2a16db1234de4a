//! TF-IDF features, the lexical baseline (and optional companion of the embeddings):
//! scikit-learn's `TfidfVectorizer` defaults where they apply — lower-case words of two or
//! more alphanumeric characters, smooth idf `ln((1 + n) / (1 + df)) + 1`, rows scaled to unit
//! L2 norm — plus sublinear tf (`1 + ln tf`), unigrams and bigrams, a minimum document
//! frequency, and the `max_features` most frequent terms.

use std::collections::HashMap;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Tfidf {
    vocab: HashMap<String, usize>,
    idf: Vec<f32>,
    bigrams: bool,
}

fn terms(text: &str, bigrams: bool) -> Vec<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .collect();
    let mut out = words.clone();
    if bigrams {
        out.extend(words.windows(2).map(|w| format!("{} {}", w[0], w[1])));
    }
    out
}

impl Tfidf {
    pub fn fit(texts: &[&str], min_df: usize, max_features: usize, bigrams: bool) -> Result<Self> {
        if texts.is_empty() || max_features == 0 {
            return Err(Error::invalid(
                "tfidf",
                "needs at least one text and max_features ≥ 1",
            ));
        }
        let mut df: HashMap<String, usize> = HashMap::new();
        let mut tf: HashMap<String, usize> = HashMap::new();
        for t in texts {
            let ts = terms(t, bigrams);
            for term in &ts {
                *tf.entry(term.clone()).or_default() += 1;
            }
            let mut unique = ts;
            unique.sort_unstable();
            unique.dedup();
            for term in unique {
                *df.entry(term).or_default() += 1;
            }
        }
        let mut kept: Vec<(String, usize)> = df
            .into_iter()
            .filter(|(_, d)| *d >= min_df.max(1))
            .collect();
        // Most frequent terms first (ties by term, for determinism).
        kept.sort_by(|a, b| tf[&b.0].cmp(&tf[&a.0]).then_with(|| a.0.cmp(&b.0)));
        kept.truncate(max_features);
        if kept.is_empty() {
            return Err(Error::invalid(
                "tfidf",
                "no term reaches the minimum document frequency",
            ));
        }
        let n = texts.len() as f32;
        let mut vocab = HashMap::new();
        let mut idf = Vec::new();
        for (i, (term, d)) in kept.into_iter().enumerate() {
            idf.push(((1.0 + n) / (1.0 + d as f32)).ln() + 1.0);
            vocab.insert(term, i);
        }
        Ok(Self {
            vocab,
            idf,
            bigrams,
        })
    }

    pub fn dim(&self) -> usize {
        self.idf.len()
    }

    /// The unit-norm TF-IDF vector of a text (all zeros if it has no known term).
    pub fn transform(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim()];
        for term in terms(text, self.bigrams) {
            if let Some(&i) = self.vocab.get(&term) {
                v[i] += 1.0;
            }
        }
        for (x, idf) in v.iter_mut().zip(&self.idf) {
            if *x > 0.0 {
                *x = (1.0 + x.ln()) * idf;
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}
