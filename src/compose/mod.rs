//! The compose model: what the user wrote, made canonical.
//!
//! `loader` finds the files, parses YAML (anchors and `<<` merge keys included), interpolates,
//! merges `-f` files as JSON values and deserializes into the typed `model`, where every short
//! syntax is already turned into its long form. This module depends on nothing else in berth.
pub mod error;
pub mod interpolate;
pub mod loader;
pub mod model;

pub use error::ComposeError;
pub use loader::{LoadOptions, load};
pub use model::*;
