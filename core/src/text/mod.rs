//! Text classification on sentence embeddings (ABEX-RAT): the MLP head with focal loss and
//! random adversarial training, and the metrics for imbalanced classes.

pub mod classifier;
pub mod cv;
pub mod explain;
pub mod metrics;
pub mod tfidf;
