//! Dataset rows every stage reads, parsed into typed examples with their line numbers.
pub mod prefs;
pub mod sft;
pub mod unpaired;
