//! The engine: images, containers, volumes and the runtime that runs them, usable without compose.
//!
//! The one decision to know: every container has its own supervising process, the shim
//! (`berth __shim ID`), which creates it (berth's own launcher, or libcontainer), owns its
//! stdio and log, holds its published host ports and records its exit. No daemon: the CLI
//! talks to containers through the files under the state root and by signalling pids it has
//! verified.
pub mod build;
pub mod cgroups;
pub mod container;
pub mod control;
pub mod copy;
pub mod events;
pub mod exec;
pub mod health;
pub mod hostconfig;
pub mod image;
pub mod init;
pub mod launch;
pub mod logs;
pub mod registry;
pub mod resources;
pub mod rootfs;
pub mod runtime;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod tty;
pub mod volume;
