//! One module per verb: each parses its flags into core specs, calls the core, and renders
//! what comes back (text, JSON, files).

pub mod attack;
pub mod augment;
pub mod bench_step;
pub mod diagnose;
pub mod eval;
pub mod inspect;
pub mod predict;
pub mod samples;
pub mod text;
pub mod train;
