//! berth: a daemonless, Compose-file driven multi-container tool with its own container runtime.
//!
//! Data flows one way: `cli → project → engine/net`; `compose` depends on nothing of ours.
//! See ARCHITECTURE.md for the layers, the processes and who owns which state.
pub mod cli;
pub mod compose;
pub mod engine;
pub mod net;
pub mod project;
pub mod state;
pub mod sys;
