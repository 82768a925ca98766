//! ppo stage.
