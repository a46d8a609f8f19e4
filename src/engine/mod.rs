//! engine
pub mod image;
