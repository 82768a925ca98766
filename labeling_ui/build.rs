//! `sqlx::migrate!("../migrations")` embeds the migrations at compile time; without this, a new
//! migration file would not reach an incrementally rebuilt binary (sqlx's documented remedy).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
