//! sft stage.
