//! Shared training machinery.
