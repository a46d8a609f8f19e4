//! Kernel-facing helpers. `unsafe` is allowed only below this module, each block with a
//! `// SAFETY:` comment; the rest of berth denies `unsafe_code`.
#![allow(unsafe_code)]
pub mod child;
pub mod exeseal;
pub mod fsat;
pub mod mem;
pub mod proc;
pub mod pty;
pub mod seccomp;
pub mod timing;
pub mod xtables;
