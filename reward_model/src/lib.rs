//! reward_model stage.
