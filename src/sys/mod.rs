//! Kernel calls that need `unsafe`. Everything else in berth denies `unsafe_code`.
#![allow(unsafe_code)]
pub mod fsat;
