//! `rudder compare`: sample every model on the same prompts with the same seeds, measure each
//! model's KL to the base on its own samples, score with a reward model, and write
//! `results.jsonl` plus a self-contained `index.html`; and blind human evaluation through the
//! labeling app (`push_to_labeling`, `win_rates`); what each model's sampling cost
//! (`cost`). See `compare/README.md`.
pub mod blind;
pub mod cost;
pub mod error;
mod html;
pub mod prompts;
pub mod provenance;
pub mod report;
pub mod run;
pub mod stats;
mod svg;

pub use error::{Error, Result};
pub use prompts::{EvalPrompt, DEFAULT_PROMPTS};
pub use report::{write_report, Report};
pub use run::{CompareSettings, ModelSpec, Sample, Sampled};
