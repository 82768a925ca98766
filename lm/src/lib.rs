//! Rudder model core.
