//! Settings written once: a config struct derives `clap::Args`, and each field's
//! `#[arg(default_value…)]` is its one default, for the flags, for the TOML files (serde fills
//! a missing key from `Default`) and for library callers alike.
use clap::{Args, Command, FromArgMatches};

/// `T` with every field at the default its flag declares (`T::default()` of a settings
/// struct). A struct with a required argument is a programming error, caught by any test that
/// builds its default.
pub fn defaults<T: Args + FromArgMatches>() -> T {
    let cmd = T::augment_args(Command::new("defaults").no_binary_name(true));
    let matches = cmd
        .try_get_matches_from(std::iter::empty::<String>())
        .unwrap_or_else(|e| panic!("settings defaults: {e}"));
    T::from_arg_matches(&matches).unwrap_or_else(|e| panic!("settings defaults: {e}"))
}
