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
    /// A step of one part of a resource, shown below it as docker compose does: a layer `id`
    /// of the image being pulled (`parent` is `Image REF`), e.g. `Downloading`, `Pull complete`.
    fn detail(&self, _parent: &str, _id: &str, _status: &str) {}
}

/// Progress that goes nowhere (tests, `--progress quiet`).
pub struct Quiet;
impl Progress for Quiet {
    fn event(&self, _: &str, _: &str, _: &str) {}
}

/// Progress without what docker compose's `--quiet-pull` (a pull's layer lines) and
/// `--quiet-build` (a build's steps and output) leave out; the images' own lines (`Pulling`,
/// `Pulled`, `Building`, `Built`) and every error stay.
pub struct Filtered<'a> {
    pub inner: &'a dyn Progress,
    pub quiet_pull: bool,
    pub quiet_build: bool,
}

impl Progress for Filtered<'_> {
    fn event(&self, kind: &str, name: &str, status: &str) {
        if !(self.quiet_build && kind == "Build") {
            self.inner.event(kind, name, status);
        }
    }
    fn detail(&self, parent: &str, id: &str, status: &str) {
        if !self.quiet_pull {
            self.inner.detail(parent, id, status);
        }
    }
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
