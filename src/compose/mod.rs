//! The compose model: what the user wrote, made canonical.
//!
//! `loader` finds the files and the environment and runs compose-go's pipeline: `yaml` parses
//! (anchors, `<<` merge keys, `!reset`/`!override`, and a position for every key path),
//! `interpolate` expands variables per file, `schema` validates, `include`/`extends` compose
//! files, `merge` applies the spec's merge rules, and `normalize` produces the typed `model`,
//! where every short syntax is already in its long form.
//!
//! The design decision to know: the pipeline works on JSON values plus a side table of
//! positions, so that every error, however late it is found, names `file:line:col` and the key
//! path. This module depends on nothing else in berth.
pub mod dotenv;
pub mod error;
mod extends;
mod include;
pub mod interpolate;
pub mod loader;
pub mod merge;
pub mod model;
pub mod normalize;
pub mod remote;
pub mod schema;
pub mod units;
pub mod yaml;

pub use error::ComposeError;
pub use loader::{LoadOptions, load};
pub use model::*;
