//! dpo stage.
