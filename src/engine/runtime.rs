//! Container lifecycle as the CLI sees it: prepare, start (spawn the shim), stop, remove.
//!
//! The shim does the kernel work of starting; this side prepares the files and the overlay,
//! and undoes everything on removal. Every step is idempotent, so a `down` after a crash at any
//! point finishes the job.
use super::container::{ContainerRecord, Status, load_state};
use super::rootfs::{Overlay, mounts_under};
use super::shim::Ready;
use crate::state::{Paths, StateError, io_err};
use nix::sys::signal::Signal;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Rootfs(#[from] super::rootfs::RootfsError),
    #[error(transparent)]
    Volume(#[from] super::volume::VolumeError),
    #[error("cannot start the shim of container {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("container {name} failed to start: {message}")]
    Start { name: String, message: String },
    #[error("container {name} is still running after SIGKILL")]
    StillRunning { name: String },
    #[error("refusing to remove {}: mounts remain under it ({})", dir.display(), mounts.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(", "))]
    MountsRemain { dir: PathBuf, mounts: Vec<PathBuf> },
}

/// Writes the container's record and `/etc` files and mounts its root filesystem.
pub fn prepare(
    paths: &Paths,
    rec: &ContainerRecord,
    hosts: &str,
    resolv: &str,
) -> Result<(), RuntimeError> {
    let dir = rec.dir(paths);
    rec.save(paths)?;
    write_etc_file(&dir.join("hostname"), &format!("{}\n", rec.hostname))?;
    write_etc_file(&dir.join("hosts"), hosts)?;
    write_etc_file(&dir.join("resolv.conf"), resolv)?;
    crate::sys::timing::mark("files written");
    let mut layers = rec.layers.clone();
    layers.push(super::rootfs::init_layer(&paths.init_layer())?);
    Overlay::new(&dir).mount(&layers, rec.host.volatile_rootfs)?;
    crate::sys::timing::mark("rootfs mounted");
    for m in &rec.mounts {
        // A volume with options is filled in its own filesystem, mounted meanwhile (as
        // Docker's: a tmpfs nobody else holds loses it again).
        let held = m.volume.as_deref().filter(|_| !m.nocopy);
        let holder = format!("copy-up-{}", rec.id);
        if let Some(name) = held {
            super::volume::acquire(paths, name, &holder)?;
        }
        let copied =
            super::volume::copy_up(&Overlay::new(&dir).merged, m).map_err(|e| StateError::Io {
                path: m.source.clone(),
                source: std::io::Error::other(format!(
                    "copying the image's {} into the volume: {e}",
                    m.target
                )),
            });
        if let Some(name) = held {
            super::volume::release(paths, name, &holder);
        }
        copied?;
    }
    write_file(&dir.join(PREPARED_MARKER), "")?;
    super::events::emit(paths, rec, "create", &[]);
    Ok(())
}

const PREPARED_MARKER: &str = "prepared";

/// Whether the container's preparation finished (a container `created` without it comes from an
/// `up` killed halfway, and is made anew rather than started).
pub fn prepared(paths: &Paths, rec: &ContainerRecord) -> bool {
    paths.container(&rec.id).join(PREPARED_MARKER).exists()
}

/// Rewrites a file in place (it is bind-mounted into running containers, so no rename).
pub fn write_file(path: &std::path::Path, content: &str) -> Result<(), StateError> {
    std::fs::write(path, content).map_err(io_err(path))
}

/// A file the container sees as one of its `/etc` files: readable by all its users, as
/// Docker's are, whatever berth's umask.
fn write_etc_file(path: &std::path::Path, content: &str) -> Result<(), StateError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut f = std::fs::File::create(path).map_err(io_err(path))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io_err(path))?;
    f.write_all(content.as_bytes()).map_err(io_err(path))
}

const STOP_MARKER: &str = "stop-requested";

/// Whether a user asked for this container to stop (so its restart policy must not restart it).
pub fn stop_requested(paths: &Paths, id: &str) -> bool {
    paths.container(id).join(STOP_MARKER).exists()
}

/// Records that the user stopped this container, so its restart policy leaves it stopped.
pub fn mark_stop_requested(paths: &Paths, rec: &ContainerRecord) -> Result<(), StateError> {
    let dir = rec.dir(paths);
    if dir.is_dir() {
        write_file(&dir.join(STOP_MARKER), "")?;
    }
    Ok(())
}

/// Starts the container's shim and waits until the container runs or fails.
pub fn start(paths: &Paths, rec: &ContainerRecord) -> Result<Ready, RuntimeError> {
    start_with(paths, rec, false)
}

/// [`start`], with our stdin handed to the container as its stdin when `stdin` (`run -i`).
pub fn start_with(
    paths: &Paths,
    rec: &ContainerRecord,
    stdin: bool,
) -> Result<Ready, RuntimeError> {
    let mut child = spawn_shim(paths, rec, if stdin { Hold::Stdin } else { Hold::No })?;
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    // The shim keeps running; the kernel reparents it when we exit. Do not wait for it.
    drop(child);
    parse_report(paths, rec, &out)
}

/// A shim spawned ahead of its container's preparation ([`spawn_early`]), waiting to be let go.
/// Dropped without [`Early::start`], it exits without doing anything.
pub struct Early {
    /// Our end of the shim's stdout, a socket: `go` goes this way, the report comes back.
    socket: std::os::unix::net::UnixStream,
}

/// Spawns the container's shim now, so that its start-up (an exec of berth) overlaps the rest
/// of the container's preparation; [`Early::start`] then starts the container as [`start_with`]
/// does (`stdin`: with our stdin as the container's). Needs the container's directory (the
/// record saved once).
pub fn spawn_early(
    paths: &Paths,
    rec: &ContainerRecord,
    stdin: bool,
) -> Result<Early, RuntimeError> {
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|source| RuntimeError::Spawn {
            name: rec.name.clone(),
            source,
        })?;
    // Not waited for: the kernel reparents the shim when we exit.
    drop(spawn_shim(paths, rec, Hold::Early(theirs.into(), stdin))?);
    Ok(Early { socket: ours })
}

impl Early {
    /// Lets the shim go on with the prepared container; returns once it runs (or failed to).
    pub fn start(mut self, paths: &Paths, rec: &ContainerRecord) -> Result<Ready, RuntimeError> {
        let _ = std::io::Write::write_all(&mut self.socket, b"go\n");
        let mut out = String::new();
        let _ = self.socket.read_to_string(&mut out);
        parse_report(paths, rec, &out)
    }
}

/// The terminal of a foreground container (`berth run` on a terminal): the pty's master, for
/// input and the window size, and a socket on which the shim forwards what it reads from the
/// master (it also logs it, so the container's output is in `logs` too).
pub struct Terminal {
    pub master: std::os::fd::OwnedFd,
    pub output: std::os::unix::net::UnixStream,
}

/// [`start`] for a container with `tty: true` whose terminal the caller relays: `size` is the
/// window size (rows, columns) the pty gets before the process starts.
pub fn start_with_terminal(
    paths: &Paths,
    rec: &ContainerRecord,
    size: Option<(u16, u16)>,
) -> Result<(Ready, Terminal), RuntimeError> {
    let failed = |message: String| RuntimeError::Start {
        name: rec.name.clone(),
        message,
    };
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| failed(format!("socketpair: {e}")))?;
    let mut child = spawn_shim(paths, rec, Hold::Terminal(theirs.into(), size))?;
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    drop(child);
    let ready = parse_report(paths, rec, &out)?;
    let master = crate::sys::pty::receive_one_fd(&ours)
        .map_err(|e| failed(format!("receiving the container's terminal: {e}")))?;
    Ok((
        ready,
        Terminal {
            master,
            output: ours,
        },
    ))
}

/// A container created by its shim, not started yet (`up` creates every container at once and
/// starts each when its dependencies allow). Dropping it without [`Created::start`] makes the
/// shim delete the container again (it stays `created` on disk) and waits for that.
pub struct Created {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    name: String,
}

/// Spawns the container's shim and waits until the container is created (or failed to be).
pub fn create(paths: &Paths, rec: &ContainerRecord) -> Result<Created, RuntimeError> {
    let mut child = spawn_shim(paths, rec, Hold::Yes)?;
    let Some(stdout) = child.stdout.take() else {
        return Err(RuntimeError::Start {
            name: rec.name.clone(),
            message: "no pipe to the shim".into(),
        });
    };
    let mut stdout = std::io::BufReader::new(stdout);
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut stdout, &mut line);
    let created = Created {
        child,
        stdout,
        name: rec.name.clone(),
    };
    parse_report(paths, rec, &line)?;
    Ok(created)
}

impl Created {
    /// Starts the created container; returns once it runs (or failed to).
    pub fn start(mut self, paths: &Paths, rec: &ContainerRecord) -> Result<Ready, RuntimeError> {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = std::io::Write::write_all(&mut stdin, b"go\n");
        }
        let mut out = String::new();
        let _ = self.stdout.read_to_string(&mut out);
        parse_report(paths, rec, &out)
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        // Not started: end of file on its stdin tells the shim to delete the container; its
        // stdout closes when it is done.
        if let Some(stdin) = self.child.stdin.take() {
            drop(stdin);
            let mut rest = String::new();
            let _ = self.stdout.read_to_string(&mut rest);
            tracing::debug!("start of {} cancelled", self.name);
        }
    }
}

fn parse_report(paths: &Paths, rec: &ContainerRecord, out: &str) -> Result<Ready, RuntimeError> {
    let ready: Ready = serde_json::from_str(out.trim()).map_err(|_| RuntimeError::Start {
        name: rec.name.clone(),
        message: format!(
            "the shim exited without a report (see {})",
            rec.dir(paths).join("shim.log").display()
        ),
    })?;
    if !ready.ok {
        return Err(RuntimeError::Start {
            name: rec.name.clone(),
            message: ready.error.unwrap_or_default(),
        });
    }
    Ok(ready)
}

/// Spawns `berth __shim` for the container, in its own process group, its report on a pipe.
/// How the shim's stdin is used.
enum Hold {
    /// Start right away; stdin is /dev/null.
    No,
    /// Wait for `go` on stdin (a pipe) between creating and starting.
    Yes,
    /// Wait for `go` on stdout (a socket, the report goes back on it) before anything else
    /// ([`spawn_early`]); with our stdin for the container when the flag says so.
    Early(std::os::fd::OwnedFd, bool),
    /// Start right away and hand our stdin to the container (`run -i`).
    Stdin,
    /// Start right away; stdin is a socket on which the shim sends the pty's master and then
    /// forwards its output (`run` on a terminal), with the window size to give the pty.
    Terminal(std::os::fd::OwnedFd, Option<(u16, u16)>),
}

fn spawn_shim(
    paths: &Paths,
    rec: &ContainerRecord,
    hold: Hold,
) -> Result<std::process::Child, RuntimeError> {
    let _ = std::fs::remove_file(rec.dir(paths).join(STOP_MARKER));
    let _ = std::fs::remove_file(rec.dir(paths).join(super::control::PAUSED_MARKER));
    let exe = shim_exe().map_err(|source| RuntimeError::Spawn {
        name: rec.name.clone(),
        source,
    })?;
    crate::sys::timing::mark("shim exe sealed");
    let dir = rec.dir(paths);
    let shim_log =
        std::fs::File::create(dir.join("shim.log")).map_err(|source| RuntimeError::Spawn {
            name: rec.name.clone(),
            source,
        })?;
    let mut cmd = Command::new(exe);
    cmd.arg0(arg0())
        .arg("__shim")
        .arg("--data")
        .arg(&paths.data)
        .arg("--run")
        .arg(&paths.run)
        .arg(&rec.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(shim_log)
        .process_group(0)
        .current_dir("/");
    match hold {
        Hold::No => {}
        Hold::Yes => {
            cmd.env(super::shim::HOLD_ENV, "1").stdin(Stdio::piped());
        }
        Hold::Early(socket, stdin) => {
            cmd.env(super::shim::EARLY_ENV, "1")
                .stdout(Stdio::from(socket));
            if stdin {
                cmd.env(super::shim::STDIN_ENV, "1").stdin(Stdio::inherit());
            }
        }
        Hold::Stdin => {
            cmd.env(super::shim::STDIN_ENV, "1").stdin(Stdio::inherit());
        }
        Hold::Terminal(socket, size) => {
            let (rows, cols) = size.unwrap_or((0, 0));
            cmd.env(super::shim::TERMINAL_ENV, format!("{rows} {cols}"))
                .stdin(Stdio::from(socket));
        }
    }
    let child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
        name: rec.name.clone(),
        source,
    });
    crate::sys::timing::mark("shim spawned");
    child
}

use std::os::unix::process::CommandExt;

/// What the shim is executed from: a read-only mount of berth made once per CLI process
/// (`sys::exeseal`), so the shim starts protected and need not re-execute itself (one exec per
/// container instead of two). Falls back to the binary's path, where the shim seals itself.
fn shim_exe() -> std::io::Result<PathBuf> {
    static SEALED: std::sync::OnceLock<Option<std::os::fd::OwnedFd>> = std::sync::OnceLock::new();
    let sealed = SEALED.get_or_init(|| crate::sys::exeseal::sealed_exe().ok());
    match sealed {
        // The child resolves this path in its own fd table, inherited from ours, before exec
        // closes the (close-on-exec) descriptor.
        Some(fd) => Ok(PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(fd)
        ))),
        None => std::env::current_exe(),
    }
}

/// The shim's `argv[0]`: berth's own, so `ps` shows what it always did.
fn arg0() -> std::ffi::OsString {
    std::env::args_os().next().unwrap_or_else(|| "berth".into())
}

/// The grace period of a stop: the command's `-t` when given, else the container's
/// `stop_grace_period`, else 10 s.
pub fn grace(rec: &ContainerRecord, flag: Option<Duration>) -> Duration {
    flag.or(rec.host.stop_grace_period_ms.map(Duration::from_millis))
        .unwrap_or(Duration::from_secs(10))
}

/// Stops the container: its stop signal (SIGTERM by default), then SIGKILL after `timeout`;
/// returns once its shim has recorded the exit.
pub fn stop(paths: &Paths, rec: &ContainerRecord, timeout: Duration) -> Result<(), RuntimeError> {
    // First the marker, so the shim does not restart what we are about to stop.
    mark_stop_requested(paths, rec)?;
    // A shim that is still starting its container (a `down` right after a killed `up`) sees
    // the marker once the container runs and kills it; wait for it to get there or go away.
    let mut st = load_state(paths, &rec.id)?;
    wait_until(Duration::from_secs(10), || {
        st = load_state(paths, &rec.id).unwrap_or_default();
        st.status != Status::Created || !crate::sys::proc::alive(st.shim_pid, st.shim_start)
    });
    if st.status == Status::Running {
        let sig = rec
            .host
            .stop_signal
            .as_deref()
            .and_then(super::hostconfig::parse_signal)
            .unwrap_or(Signal::SIGTERM);
        crate::sys::proc::signal(st.pid, st.pid_start, sig);
        super::events::emit(paths, rec, "kill", &[("signal", (sig as i32).to_string())]);
        // A frozen container acts on the signal only once thawed.
        super::control::thaw_for_signal(paths, rec);
        if !crate::sys::proc::wait_gone(st.pid, st.pid_start, timeout) {
            crate::sys::proc::signal(st.pid, st.pid_start, Signal::SIGKILL);
            if !crate::sys::proc::wait_gone(st.pid, st.pid_start, Duration::from_secs(10)) {
                return Err(RuntimeError::StillRunning {
                    name: rec.name.clone(),
                });
            }
        }
    }
    // The shim drains the logs and cleans up the cgroup after init is gone.
    crate::sys::proc::wait_gone(st.shim_pid, st.shim_start, Duration::from_secs(10));
    // A shim killed before its container leaves that work to us.
    super::control::reap_orphan(paths, rec);
    if st.status == Status::Running {
        super::events::emit(paths, rec, "stop", &[]);
    }
    Ok(())
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Removes a stopped container's root filesystem and state directory.
pub fn remove(paths: &Paths, rec: &ContainerRecord) -> Result<(), RuntimeError> {
    let dir = rec.dir(paths);
    Overlay::new(&dir).unmount()?;
    super::rootfs::unmount_if_mounted(&super::spec::shm_dir(paths, &rec.id))?;
    // A start killed while its subpaths were staged leaves them mounted.
    let mut left = super::volume::release_subpaths(&dir);
    // A shim killed before it let go of its volumes' filesystems.
    super::volume::release_for(paths, &rec.id);
    left.extend(mounts_under(&dir));
    if !left.is_empty() {
        return Err(RuntimeError::MountsRemain { dir, mounts: left });
    }
    let runtime = paths.runtime().join(&rec.id);
    if runtime.is_dir() {
        std::fs::remove_dir_all(&runtime).map_err(io_err(&runtime))?;
    }
    // std's remove_dir_all does not follow symlinks.
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {
            super::events::emit(paths, rec, "destroy", &[]);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateError::Io {
            path: dir,
            source: e,
        }
        .into()),
    }
}
