//! Accident-report classification (ABEX-RAT): the OSHA reports (`data`), the MiniLM sentence
//! encoder (`encoder`) and its embedding cache (`embed`), ABEX abstract → expand augmentation
//! (`augment`), the MLP head with focal loss (`classifier`) and random adversarial training
//! (`rat`),
//! TF-IDF features (`tfidf`), cross-validation (`cv`), explanations and robustness probes
//! (`explain`), and the metrics for imbalanced classes (`metrics`).

pub mod augment;
pub mod checkpoint;
pub mod classifier;
pub mod cv;
pub mod data;
pub mod embed;
pub mod encoder;
pub mod explain;
pub mod finetune;
pub mod journal;
pub mod metrics;
pub mod rat;
pub mod tfidf;
