//! Acting on a running container from the CLI: pause and unpause (the cgroup freezer, through
//! libcontainer), signals, its processes, and cleaning up after a shim that died.
//!
//! The one thing to know: the shim owns the container while it lives. These calls only touch
//! what the shim does not: the freezer, signals to a pid verified by its start time, and, when
//! the shim is gone (a `kill -9`), the runtime state and cgroup it would have deleted.
use super::container::{ContainerRecord, Status, load_state};
use crate::state::Paths;
use libcontainer::container::Container;
use nix::sys::signal::Signal;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("container {name} is not running")]
    NotRunning { name: String },
    #[error("container {name} is not paused")]
    NotPaused { name: String },
    #[error("container {name} is already paused")]
    AlreadyPaused { name: String },
    #[error("container {name}: {op}: {message}")]
    Runtime {
        name: String,
        op: &'static str,
        message: String,
    },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

pub const PAUSED_MARKER: &str = "paused";

/// Whether the container's processes are frozen by `pause`.
pub fn paused(paths: &Paths, id: &str) -> bool {
    paths.container(id).join(PAUSED_MARKER).exists()
}

fn runtime_container(
    paths: &Paths,
    rec: &ContainerRecord,
    op: &'static str,
) -> Result<Container, ControlError> {
    Container::load(paths.runtime().join(&rec.id)).map_err(|e| ControlError::Runtime {
        name: rec.name.clone(),
        op,
        message: e.to_string(),
    })
}

/// Freezes every process of the container.
pub fn pause(paths: &Paths, rec: &ContainerRecord) -> Result<(), ControlError> {
    let st = load_state(paths, &rec.id)?;
    if st.status != Status::Running {
        return Err(ControlError::NotRunning {
            name: rec.name.clone(),
        });
    }
    if paused(paths, &rec.id) {
        return Err(ControlError::AlreadyPaused {
            name: rec.name.clone(),
        });
    }
    runtime_container(paths, rec, "pause")?
        .pause()
        .map_err(|e| ControlError::Runtime {
            name: rec.name.clone(),
            op: "pause",
            message: e.to_string(),
        })?;
    super::runtime::write_file(&paths.container(&rec.id).join(PAUSED_MARKER), "")?;
    super::events::emit(paths, rec, "pause", &[]);
    Ok(())
}

/// Thaws a paused container.
pub fn unpause(paths: &Paths, rec: &ContainerRecord) -> Result<(), ControlError> {
    if !paused(paths, &rec.id) {
        return Err(ControlError::NotPaused {
            name: rec.name.clone(),
        });
    }
    if load_state(paths, &rec.id)?.status == Status::Running {
        runtime_container(paths, rec, "unpause")?
            .resume()
            .map_err(|e| ControlError::Runtime {
                name: rec.name.clone(),
                op: "unpause",
                message: e.to_string(),
            })?;
    }
    let _ = std::fs::remove_file(paths.container(&rec.id).join(PAUSED_MARKER));
    super::events::emit(paths, rec, "unpause", &[]);
    Ok(())
}

/// Thaws the container if it is paused, so a signal sent to it is acted on (as `docker stop`
/// does for a paused container).
pub fn thaw_for_signal(paths: &Paths, rec: &ContainerRecord) {
    if paused(paths, &rec.id) {
        let _ = unpause(paths, rec);
    }
}

/// Sends `sig` to the container's init. `SIGKILL` and the container's stop signal count as a
/// stop asked for by the user, so the restart policy does not undo them (Docker's
/// "manually stopped").
pub fn kill(paths: &Paths, rec: &ContainerRecord, sig: Signal) -> Result<(), ControlError> {
    let st = load_state(paths, &rec.id)?;
    if st.status != Status::Running {
        return Err(ControlError::NotRunning {
            name: rec.name.clone(),
        });
    }
    let stop_signal = rec
        .host
        .stop_signal
        .as_deref()
        .and_then(super::hostconfig::parse_signal)
        .unwrap_or(Signal::SIGTERM);
    if sig == Signal::SIGKILL || sig == stop_signal {
        super::runtime::mark_stop_requested(paths, rec)?;
    }
    if !crate::sys::proc::signal(st.pid, st.pid_start, sig) {
        return Err(ControlError::NotRunning {
            name: rec.name.clone(),
        });
    }
    if sig == Signal::SIGKILL || sig == stop_signal {
        thaw_for_signal(paths, rec);
    }
    super::events::emit(paths, rec, "kill", &[("signal", (sig as i32).to_string())]);
    Ok(())
}

/// The host pids of the container's processes (its cgroup's members), init first.
pub fn pids(paths: &Paths, rec: &ContainerRecord) -> Result<Vec<i32>, ControlError> {
    let st = load_state(paths, &rec.id)?;
    if st.status != Status::Running {
        return Err(ControlError::NotRunning {
            name: rec.name.clone(),
        });
    }
    let fail = |e: String| ControlError::Runtime {
        name: rec.name.clone(),
        op: "listing processes",
        message: e,
    };
    let manager = libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: super::cgroups::container_path(paths, &rec.id),
        systemd_cgroup: false,
        container_name: rec.id.clone(),
    })
    .map_err(|e| fail(e.to_string()))?;
    use libcgroups::common::CgroupManager;
    let mut pids: Vec<i32> = manager
        .get_all_pids()
        .map_err(|e| fail(e.to_string()))?
        .into_iter()
        .map(|p| p.as_raw())
        .collect();
    pids.sort_by_key(|p| (Some(*p) != st.pid, *p));
    Ok(pids)
}

/// Does what a dead shim would have done once its container is gone: deletes the runtime
/// state and the cgroup, and records the exit (the code is unknown: 137, as Docker reports a
/// container whose monitor died). Nothing happens while the shim lives.
pub fn reap_orphan(paths: &Paths, rec: &ContainerRecord) {
    let Ok(mut st) = load_state(paths, &rec.id) else {
        return;
    };
    if st.shim_alive() || crate::sys::proc::alive(st.pid, st.pid_start) {
        return;
    }
    let dir = paths.runtime().join(&rec.id);
    // The cgroup goes as the shim's own cleanup removes it (members left are killed).
    let _ = super::cgroups::remove(&super::cgroups::container_path(paths, &rec.id));
    if dir.is_dir() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if st.pid.is_some() {
        st.status = Status::Exited;
        st.exit_code.get_or_insert(137);
        st.finished_at.get_or_insert_with(super::logs::now);
        st.pid = None;
        let _ = st.save(paths, &rec.id);
    }
    let _ = std::fs::remove_file(paths.container(&rec.id).join(PAUSED_MARKER));
    super::shim::release_shm(paths, &rec.id);
    super::volume::release_for(paths, &rec.id);
}

/// Forwards the signals a foreground `run` gets (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
/// SIGUSR2) to the container's init, as docker compose run does, until this process exits.
/// They stay blocked in the calling thread (call it before starting other threads, once the
/// container runs) and are read from a signalfd by a thread of their own.
pub fn forward_signals(paths: &Paths, rec: &ContainerRecord) {
    use nix::sys::signal::SigSet;
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    // The reader thread starts with every signal blocked, so none meant for this process (a
    // SIGWINCH for the terminal relay) is lost to it; this thread gets its mask back plus `set`.
    let Ok(old) = SigSet::all().thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK) else {
        return;
    };
    let mut mask = old;
    for s in set.iter() {
        mask.add(s);
    }
    let Ok(sfd) = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC) else {
        let _ = old.thread_set_mask();
        return;
    };
    let (paths, rec) = (paths.clone(), rec.clone());
    std::thread::spawn(move || {
        loop {
            match sfd.read_signal() {
                Ok(Some(info)) => {
                    let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    if let Ok(st) = load_state(&paths, &rec.id) {
                        crate::sys::proc::signal(st.pid, st.pid_start, sig);
                    }
                }
                Ok(None) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
    });
    let _ = mask.thread_set_mask();
}
