//! Projects: what should exist for a compose file, and the plan and executor that get there.
//!
//! The one decision to know: berth keeps no project database. A project is whatever containers,
//! networks and volumes under the state root carry its `com.docker.compose.project` label, as
//! with docker compose; `down -p NAME` therefore works without the compose file, and a crashed
//! `up` leaves records that the next `up` or `down` finds.
pub mod anonymous;
pub mod build;
pub mod container;
pub mod down;
pub mod graph;
pub mod hostconfig;
pub mod network;
pub mod par;
pub mod pull;
pub mod run;
pub mod secrets;
pub mod start;
pub mod supervision;
pub mod up;

use crate::engine::container::{self as records, ContainerRecord};
use crate::state::{Lock, Paths, StateError};

/// Receives progress events; the CLI renders them (plain lines, or live lines on a TTY).
pub trait Progress: Sync {
    /// `kind` is `Container`, `Network` or `Volume`; `status` e.g. `Created`, `Started`.
    fn event(&self, kind: &str, name: &str, status: &str);
}

/// Progress that goes nowhere (tests, `--progress quiet`).
pub struct Quiet;
impl Progress for Quiet {
    fn event(&self, _: &str, _: &str, _: &str) {}
}

/// Serializes commands that change one project (two concurrent `up`s never interleave).
pub fn lock(paths: &Paths, project: &str) -> Result<Lock, StateError> {
    Lock::acquire(&paths.locks().join(format!("project-{project}.lock")))
}

/// The containers of a project, sorted by name.
pub fn containers(paths: &Paths, project: &str) -> Result<Vec<ContainerRecord>, StateError> {
    Ok(records::list(paths)?
        .into_iter()
        .filter(|c| c.project() == Some(project))
        .collect())
}

/// The network layer handle of this state root.
pub fn net_host(paths: &Paths) -> crate::net::NetHost {
    crate::net::NetHost::new(paths.run.join("net"), paths.nft_table())
}
