//! The per-container shim: `berth __shim ID`, a re-exec of berth that outlives the CLI.
//!
//! It is started by the CLI in its own process group, creates the container through berth's
//! launcher or libcontainer (so the container's init is the shim's child), reports "ready" or an error on
//! its stdout (a pipe the CLI reads until EOF), then copies the container's stdout and stderr
//! into the log file until they close, reaps init, records the exit code and cleans up the
//! runtime state and cgroup. It is single-threaded and never runs tokio: both clone this
//! process (and libcontainer briefly changes its working directory).
use super::container::{ContainerRecord, Health, HealthStatus, State, Status};
use super::logs::{self, LineWriter};
use crate::state::{Paths, read_json};
use anyhow::{Context, Result, anyhow};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitStatus, waitpid};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

/// Set to `1` in the shim's environment when its stdin is the container's (`run -i`).
pub const STDIN_ENV: &str = "BERTH_SHIM_STDIN";

/// Set to `ROWS COLS` in the environment of a shim whose stdin is a socket to a caller that
/// relays the container's terminal (`run` on a terminal): the pty's master is sent there and
/// its output forwarded there as well as logged.
pub const TERMINAL_ENV: &str = "BERTH_SHIM_TERMINAL";

/// Set (to anything) in the environment of a shim spawned before its container is ready to be
/// made (`run`: its start-up overlaps the network's set-up). Its stdout is then a socket: it
/// waits for `go` there before it reads anything (end of file means "nothing to do"), and its
/// report goes back the same way.
pub const EARLY_ENV: &str = "BERTH_SHIM_EARLY";

/// What the shim tells the CLI once the container runs (or failed to).
#[derive(Debug, Serialize, Deserialize)]
pub struct Ready {
    pub ok: bool,
    pub error: Option<String>,
    pub pid: Option<i32>,
    pub ports: Vec<u16>,
}

impl Ready {
    /// The report of a container made (held or running) with init `pid` and the bound ports.
    fn started(pid: Option<i32>, ports: &[u16]) -> Self {
        Ready {
            ok: true,
            error: None,
            pid,
            ports: ports.to_vec(),
        }
    }
}

/// Entry point of `berth __shim`. Returns the shim's exit code.
pub fn main(paths: &Paths, id: &str) -> i32 {
    crate::sys::timing::mark("shim main");
    if std::env::var_os(EARLY_ENV).is_some() {
        // The cgroup's directories now, while the CLI still sets up the network.
        let cgroup = super::cgroups::container_path(paths, id);
        let _ = super::cgroups::make(&cgroup);
        if !released() {
            let _ = super::cgroups::remove(&cgroup);
            return 0;
        }
        crate::sys::timing::mark("shim released");
    }
    let mut out = std::io::stdout();
    let rec: ContainerRecord = match read_json(&paths.container(id).join("container.json")) {
        Ok(Some(r)) => r,
        Ok(None) => return report(&mut out, Err(anyhow!("no such container: {id}"))),
        Err(e) => return report(&mut out, Err(e.into())),
    };
    let mut state = State {
        shim_pid: Some(std::process::id() as i32),
        shim_start: crate::sys::proc::start_time(std::process::id() as i32),
        ..Default::default()
    };
    // First of all say who we are, so a `stop` racing with this start can find us.
    if let Err(e) = state.save(paths, id) {
        return report(&mut out, Err(e.into()));
    }
    // The sockets hold the published host ports for as long as the container lives.
    let (_held, ports) = match reserve(&rec) {
        Ok(r) => r,
        Err(e) => {
            state.status = Status::Exited;
            state.error = Some(format!("{e:#}"));
            let _ = state.save(paths, id);
            return report(&mut out, Err(e));
        }
    };
    state.ports = ports.clone();
    // The resolver at 127.0.0.11, bound before the container starts so its first query works.
    let mut dns = resolver(paths, &rec);
    proxy_loopback6(&rec, &ports);
    let log_path = paths.container(id).join(logs::LOG_FILE);
    let policy = rec.supervision.restart;
    let mut backoff = None;
    let mut first = true;
    // `up` creates every container first and starts each when its dependencies allow: it asks
    // us to hold between the two (see `runtime::spawn`).
    let mut hold = std::env::var_os(HOLD_ENV).is_some();
    let mut aborted = false;
    let mut terminal: Option<std::os::unix::net::UnixStream> = None;
    loop {
        crate::sys::timing::mark("shim create");
        let created = create(paths, &rec).and_then(|(mut container, out_r, err_r, stdin_w)| {
            if hold {
                hold = false;
                let pid = container.pid().map(|p| p.as_raw());
                report(&mut out, Ok(Ready::started(pid, &ports)));
                if !go_ahead() {
                    aborted = true;
                    discard(container);
                    return Err(anyhow!("start cancelled"));
                }
            }
            if first && let Err(e) = attach_terminal(&rec, &out_r).map(|t| terminal = t) {
                discard(container);
                return Err(e);
            }
            crate::sys::timing::mark("shim created");
            if let Err(e) = container.start() {
                discard(container);
                return Err(anyhow!("starting the container: {e}"));
            }
            Ok((container, out_r, err_r, stdin_w))
        });
        // `_stdin` holds the write end of an open stdin (`stdin_open`) while this run lasts.
        let (container, out_r, err_r, _stdin) = match created {
            Ok(x) => x,
            Err(_) if aborted => {
                // Never started: the container stays created, as docker's does when a
                // dependency fails; a later start spawns a new shim.
                cleanup_runtime(paths, id);
                release_shm(paths, id);
                super::volume::release_for(paths, id);
                let _ = State::default().save(paths, id);
                return 0;
            }
            Err(e) => {
                state.status = Status::Exited;
                state.exit_code = Some(128);
                state.error = Some(format!("{e:#}"));
                state.finished_at = Some(logs::now());
                let _ = state.save(paths, id);
                cleanup_runtime(paths, id);
                release_shm(paths, id);
                super::volume::release_for(paths, id);
                if first {
                    return report(&mut out, Err(e));
                }
                return 1;
            }
        };
        crate::sys::timing::mark("shim started");
        let pid = container.pid().map(|p| p.as_raw());
        state.status = Status::Running;
        state.pid = pid;
        state.pid_start = pid.and_then(crate::sys::proc::start_time);
        state.started_at = Some(logs::now());
        state.finished_at = None;
        state.exit_code = None;
        state.health = rec.supervision.healthcheck.as_ref().map(|_| Health {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: Vec::new(),
        });
        if let Err(e) = state.save(paths, id)
            && first
        {
            return report(&mut out, Err(e.into()));
        }
        super::events::emit(paths, &rec, "start", &[]);
        // A stop asked for while we were starting (its caller saw no running container yet).
        if super::runtime::stop_requested(paths, id)
            && let Some(p) = pid
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if first {
            report(&mut out, Ok(Ready::started(pid, &ports)));
            // From here on nobody reads our stdout.
            if let Ok(null) = File::options().write(true).open("/dev/null") {
                let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1);
            }
            first = false;
        }
        let ran_from = Instant::now();
        let mut health = rec
            .supervision
            .healthcheck
            .clone()
            .map(|spec| super::health::Checker::new(spec, ran_from));
        // Without a pid namespace of its own, the container's other processes outlive its
        // init (and hold the output pipes): as Docker, they are killed once the init exits.
        let init_exit = pid
            .filter(|_| rec.host.pid_host || rec.host.pid_join.is_some())
            .and_then(|p| crate::sys::proc::pidfd_open(p).ok());
        supervise(
            paths,
            &rec,
            &mut state,
            (out_r, err_r, terminal.take(), init_exit),
            &log_path,
            health.as_mut(),
            dns.as_mut(),
        );
        let code = match pid.map(|p| waitpid(nix::unistd::Pid::from_raw(p), None)) {
            Some(Ok(WaitStatus::Exited(_, c))) => c,
            Some(Ok(WaitStatus::Signaled(_, s, _))) => 128 + s as i32,
            _ => 255,
        };
        crate::sys::timing::mark("shim reaped");
        // The init is reaped: what is left of the container is its cgroup and its runtime
        // state (below), not worth libcontainer's delete and its mount-table reads.
        drop(container);
        let _ = super::cgroups::remove(&super::cgroups::container_path(paths, id));
        crate::sys::timing::mark("shim deleted");
        cleanup_runtime(paths, id);
        release_shm(paths, id);
        super::volume::release_for(paths, id);
        state.status = Status::Exited;
        state.exit_code = Some(code);
        state.finished_at = Some(logs::now());
        state.pid = None;
        let _ = state.save(paths, id);
        super::events::emit(paths, &rec, "die", &[("exitCode", code.to_string())]);
        crate::sys::timing::mark("shim saved");

        let stop = super::runtime::stop_requested(paths, id);
        if !policy.restarts(code, state.restart_count, stop) {
            if rec.host.auto_remove {
                auto_remove(paths, id);
            }
            return 0;
        }
        let delay = super::container::restart_delay(backoff, ran_from.elapsed());
        backoff = Some(delay);
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if super::runtime::stop_requested(paths, id) {
                return 0;
            }
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
        state.restart_count += 1;
    }
}

fn report(out: &mut impl Write, r: Result<Ready>) -> i32 {
    let (ready, code) = match r {
        Ok(ready) => (ready, 0),
        Err(e) => (
            Ready {
                ok: false,
                error: Some(format!("{e:#}")),
                pid: None,
                ports: Vec::new(),
            },
            1,
        ),
    };
    let _ = serde_json::to_writer(&mut *out, &ready);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    code
}

/// Set (to anything) in the environment of a shim that reports once its container is created
/// and starts it only after reading `go` on its stdin; end of file there means "do not start".
pub const HOLD_ENV: &str = "BERTH_SHIM_HOLD";

/// A created container's init, made by berth's own launcher or by libcontainer.
enum Init {
    Lean(super::launch::Created, std::path::PathBuf),
    Lib(libcontainer::container::Container),
}

impl Init {
    fn pid(&self) -> Option<nix::unistd::Pid> {
        match self {
            Init::Lean(c, _) => Some(c.pid()),
            Init::Lib(c) => c.pid(),
        }
    }

    fn start(&mut self) -> Result<()> {
        match self {
            Init::Lean(c, runtime_dir) => {
                c.start()?;
                super::launch::record_started(runtime_dir);
                Ok(())
            }
            Init::Lib(c) => c.start().map_err(|e| anyhow!("{e}")),
        }
    }
}

/// Kills and deletes a created container that will not run, and reaps its init.
fn discard(container: Init) {
    match container {
        Init::Lean(c, _) => c.discard(),
        Init::Lib(mut container) => {
            let pid = container.pid();
            let _ = container.delete(true);
            if let Some(pid) = pid {
                let _ = waitpid(pid, None);
            }
        }
    }
}

/// `run` on a terminal ([`TERMINAL_ENV`]): gives the pty the caller's window size before the
/// process starts and sends its master to the caller over our stdin, a socket, which is
/// returned to carry the output too. `None` when nobody asked.
fn attach_terminal(
    rec: &ContainerRecord,
    master: &OwnedFd,
) -> Result<Option<std::os::unix::net::UnixStream>> {
    let Some(size) = std::env::var_os(TERMINAL_ENV) else {
        return Ok(None);
    };
    if !rec.host.tty {
        return Err(anyhow!(
            "a terminal was asked for, but the container has none"
        ));
    }
    let size = size.to_string_lossy().into_owned();
    if let Some((rows, cols)) = size.split_once(' ')
        && let (Ok(rows), Ok(cols)) = (rows.parse::<u16>(), cols.parse::<u16>())
        && rows > 0
    {
        crate::sys::pty::set_size(master.as_fd(), (rows, cols));
    }
    let socket = std::os::unix::net::UnixStream::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the terminal socket")?,
    );
    crate::sys::pty::send_fd(&socket, master.as_fd()).context("sending the terminal")?;
    if let Ok(null) = File::open("/dev/null") {
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0);
    }
    Ok(Some(socket))
}

/// Starts `berth __autoremove ID` on its own (it waits for this shim to be gone, then removes
/// the container as `rm` does), for a container that asked to be removed when it exits.
fn auto_remove(paths: &Paths, id: &str) {
    let spawned = std::process::Command::new("/proc/self/exe")
        .arg("__autoremove")
        .arg("--data")
        .arg(&paths.data)
        .arg("--run")
        .arg(&paths.run)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .current_dir("/")
        .spawn();
    if let Err(e) = spawned {
        tracing::warn!("container {id}: cannot start its removal: {e}");
    }
}

/// Waits for `go` from the CLI on our stdout, a socket ([`EARLY_ENV`]); anything else (end of
/// file: the CLI gave up or died) means there is nothing to do.
fn released() -> bool {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 8 {
        match nix::unistd::read(1, &mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return false,
        }
    }
    line == b"go"
}

/// Waits for the CLI's word on stdin; then stdin is no longer needed.
fn go_ahead() -> bool {
    let mut line = String::new();
    let go = std::io::stdin().read_line(&mut line).is_ok() && line.trim() == "go";
    if let Ok(null) = File::open("/dev/null") {
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0);
    }
    go
}

/// Creates the container (its init waits to be started) with its output on two pipes.
fn create(
    paths: &Paths,
    rec: &ContainerRecord,
) -> Result<(Init, OwnedFd, OwnedFd, Option<OwnedFd>)> {
    let dir = paths.container(&rec.id);
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).with_context(|| format!("creating {}", bundle.display()))?;
    if rec.host.init {
        super::init::install(paths)?;
    }
    if rec.host.ipc_shareable && !rec.host.ipc_host {
        let size = rec.host.shm_size.unwrap_or(super::spec::DEFAULT_SHM_SIZE);
        super::rootfs::mount_shm(&super::spec::shm_dir(paths, &rec.id), size)
            .context("mounting the shareable /dev/shm")?;
    }
    // The staged `subpath` mounts go once the container has made its binds from them (or
    // failed to), whichever way this function returns.
    struct Staged<'a>(&'a std::path::Path);
    impl Drop for Staged<'_> {
        fn drop(&mut self) {
            let _ = super::volume::release_subpaths(self.0);
        }
    }
    let _staged = Staged(&dir);
    // The filesystems of volumes with options (`driver_opts`), mounted while the container runs.
    super::volume::acquire_for(paths, rec)?;
    let spec = super::spec::build(rec, paths, &dir.join("rootfs"), &dir)
        .context("building the OCI spec")?;
    let (launch, executor) = super::seccomp::bpf::prepare_launch(paths, &dir, &spec)?;
    launch
        .save(bundle.join("config.json"))
        .context("writing the OCI spec")?;
    crate::sys::timing::mark("spec saved");
    let (out_r, out_w) = nix::unistd::pipe().context("pipe")?;
    let (err_r, err_w) = nix::unistd::pipe().context("pipe")?;
    let mut stdin_w = None;
    let stdin = if std::env::var_os(STDIN_ENV).is_some_and(|v| v == "1") {
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating stdin")?
    } else if rec.host.stdin_open {
        // Docker's `stdin_open` without anyone attached: a pipe that never ends.
        let (r, w) = nix::unistd::pipe().context("pipe")?;
        stdin_w = Some(w);
        r
    } else {
        OwnedFd::from(File::open("/dev/null").context("opening /dev/null")?)
    };
    // Not spread over block groups as containers are: four inodes a container, and a spread
    // directory's creation costs a millisecond (a cold group's bitmap and inode table).
    std::fs::create_dir_all(paths.runtime()).context("creating the runtime dir")?;
    // A leftover runtime dir from a crashed earlier start would make build() fail.
    cleanup_runtime(paths, &rec.id);
    // `tty: true`: libcontainer makes the pty in the container and sends us its master, which
    // then stands in for the stdout pipe (and stderr, which a terminal does not separate).
    let plan = super::launch::plan(&rec.id, &launch, &executor);
    crate::sys::timing::mark("launch planned");
    if let Err(why) = &plan {
        tracing::debug!("container {}: started by libcontainer: {why}", rec.name);
    }
    if let Ok(plan) = plan {
        let runtime_dir = paths.runtime().join(&rec.id);
        let created =
            super::launch::create(&plan, &launch, [stdin, out_w, err_w], &runtime_dir, &bundle)
                .context("creating the container")?;
        crate::sys::timing::mark("launch created");
        let pid = created.pid();
        let container = Init::Lean(created, runtime_dir);
        if let Err(e) = super::rootfs::set_bind_propagation(pid.as_raw(), &spec)
            .context("setting the propagation of the container's bind mounts")
        {
            discard(container);
            cleanup_runtime(paths, &rec.id);
            return Err(e);
        }
        return Ok((container, out_r, err_r, stdin_w));
    }
    let console = if rec.host.tty {
        Some(super::exec::ConsoleSocket::bind(&dir).context("binding the console socket")?)
    } else {
        None
    };
    let mut container = ContainerBuilder::new(rec.id.clone(), SyscallType::default())
        .with_root_path(paths.runtime())
        .map_err(|e| anyhow!("{e}"))?
        .with_console_socket(console.as_ref().map(|c| c.path()))
        .with_stdin(stdin)
        .with_stdout(out_w)
        .with_stderr(err_w)
        .with_executor(executor)
        .as_init(&bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| anyhow!("creating the container: {e}"))?;
    crate::sys::timing::mark("libcontainer built");
    // From here the container's init exists, waiting to be started: a failure must not leave
    // it behind (it would outlive this shim, holding its namespaces and mounts).
    let finish = || -> Result<Option<OwnedFd>> {
        if let Some(pid) = container.pid() {
            super::rootfs::set_bind_propagation(pid.as_raw(), &spec)
                .context("setting the propagation of the container's bind mounts")?;
        }
        console
            .map(|c| c.receive().context("receiving the container's terminal"))
            .transpose()
    };
    match finish() {
        Ok(Some(master)) => {
            // The pipes' write ends went with the builder, so the stderr pipe reads as closed.
            drop(out_r);
            Ok((Init::Lib(container), master, err_r, stdin_w))
        }
        Ok(None) => Ok((Init::Lib(container), out_r, err_r, stdin_w)),
        Err(e) => {
            if let Some(pid) = container.pid() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = container.delete(true);
            cleanup_runtime(paths, &rec.id);
            Err(e)
        }
    }
}

/// Unmounts a shareable container's host-side `/dev/shm` once it stopped (as Docker does; a
/// container that joined it keeps its own reference until it stops too).
pub fn release_shm(paths: &Paths, id: &str) {
    let _ = super::rootfs::unmount_if_mounted(&super::spec::shm_dir(paths, id));
}

fn cleanup_runtime(paths: &Paths, id: &str) {
    let d = paths.runtime().join(id);
    if d.starts_with(paths.runtime()) && d.is_dir() {
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// Copies both pipes into the log file until both reach end of file, running the healthcheck
/// on its schedule in between; stdout also goes to the caller relaying the terminal, if any.
fn supervise(
    paths: &Paths,
    rec: &ContainerRecord,
    state: &mut State,
    (out_r, err_r, mut terminal, mut init_exit): (
        OwnedFd,
        OwnedFd,
        Option<std::os::unix::net::UnixStream>,
        Option<OwnedFd>,
    ),
    log_path: &std::path::Path,
    mut health: Option<&mut super::health::Checker>,
    mut dns: Option<&mut (crate::net::dns::Server, Peers)>,
) {
    let mut log = match logs::LogFile::open(log_path, rec.supervision.logs) {
        Ok(f) => f,
        Err(_) => return,
    };
    let mut files = [File::from(out_r), File::from(err_r)];
    let mut writers = [LineWriter::new("stdout"), LineWriter::new("stderr")];
    let mut open = [true, true];
    let mut buf = vec![0u8; 64 * 1024];
    // Work (a log line, a DNS answer, a check) faults code pages back in; once things have been
    // quiet for a while they are unmapped again, so an idle shim stays small.
    const SETTLE: Duration = Duration::from_secs(5);
    // Entering this loop is work too (its code was just faulted in, with the kernel's
    // fault-around mapping neighbours): an idle container's shim drops it SETTLE later.
    let mut busy_at: Option<Instant> = Some(Instant::now());
    let mut drop_pending = false;
    let mut init_exited = false;
    while open.iter().any(|o| *o) {
        let now = Instant::now();
        let settle = busy_at.map(|t| (t + SETTLE).saturating_duration_since(now));
        let timeout = [
            health.as_ref().map(|h| h.next_wakeup(now)),
            dns.as_deref().and_then(|(s, _)| s.next_wakeup(now)),
            settle,
        ]
        .into_iter()
        .flatten()
        .min()
        .map_or(PollTimeout::NONE, |d| {
            PollTimeout::try_from(d.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::NONE)
        });
        let (ready, health_ready, dns_ready) = {
            let mut fds: Vec<PollFd> = files
                .iter()
                .zip(open)
                .filter(|(_, o)| *o)
                .map(|(f, _)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                .collect();
            let health_fd = health.as_ref().and_then(|h| h.output_fd());
            if let Some(fd) = health_fd {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            let init_at = fds.len();
            if let Some(fd) = &init_exit {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            let dns_at = fds.len();
            if let Some((server, _)) = dns.as_deref() {
                fds.extend(
                    server
                        .poll_fds()
                        .into_iter()
                        .map(|(fd, events)| PollFd::new(fd, events)),
                );
            }
            // Unmapped right before sleeping: the code run between the drop and the wait
            // is all the shim maps again while idle.
            if std::mem::take(&mut drop_pending) {
                crate::sys::mem::drop_startup_pages();
            }
            if poll(&mut fds, timeout).is_err() {
                continue;
            }
            let dns_ready: Vec<bool> = fds[dns_at..]
                .iter()
                .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            let mut revents = fds
                .iter()
                .map(|p| p.revents().is_some_and(|r| !r.is_empty()));
            let ready: Vec<bool> = open
                .iter()
                .map(|o| *o && revents.next().unwrap_or(false))
                .collect();
            let health_ready = health_fd.is_some() && revents.next().unwrap_or(false);
            if init_exit.is_some() && fds[init_at].revents().is_some_and(|r| !r.is_empty()) {
                init_exited = true;
            }
            (ready, health_ready, dns_ready)
        };
        if std::mem::take(&mut init_exited) {
            init_exit = None;
            let _ = super::cgroups::kill_all(&super::cgroups::container_path(paths, &rec.id));
        }
        if ready.iter().any(|r| *r) || health_ready || dns_ready.iter().any(|r| *r) {
            busy_at = Some(Instant::now());
        } else if busy_at.is_some_and(|t| t.elapsed() >= SETTLE) {
            busy_at = None;
            drop_pending = true;
        }
        // Also with nothing ready: the resolver expires its overdue TCP clients.
        if let Some((server, peers)) = dns.as_deref_mut() {
            server.service(&dns_ready, peers);
        }
        for i in 0..2 {
            if !ready[i] {
                continue;
            }
            match files[i].read(&mut buf) {
                Ok(0) | Err(_) => {
                    open[i] = false;
                    let _ = writers[i].finish(&mut log);
                    if i == 0 {
                        // End of file for the caller relaying the terminal.
                        terminal = None;
                    }
                }
                Ok(n) => {
                    // The caller's terminal first (someone is typing), then the log. A caller
                    // gone (EPIPE) stops the forwarding; the container runs on.
                    if i == 0
                        && let Some(t) = &mut terminal
                        && t.write_all(&buf[..n]).is_err()
                    {
                        terminal = None;
                    }
                    let _ = writers[i].feed(&buf[..n], &mut log);
                }
            }
        }
        if let Some(h) = health.as_deref_mut()
            && let Some(result) = h.tick(paths, rec, Instant::now(), health_ready)
        {
            if let Some(st) = state.health.as_mut() {
                let before = st.status;
                h.record(st, result);
                if st.status != before {
                    let action = format!("health_status: {}", st.status.as_str());
                    super::events::emit(paths, rec, &action, &[]);
                }
            }
            let _ = state.save(paths, &rec.id);
        }
    }
}

/// Binds (without listening) every published host port, so nobody else can take it while the
/// container lives. Port 0 picks a free port; a range takes its first free port.
fn reserve(rec: &ContainerRecord) -> Result<(Vec<OwnedFd>, Vec<u16>)> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for p in &rec.ports {
        let proto = match p.protocol.as_str() {
            "udp" => crate::net::Protocol::Udp,
            _ => crate::net::Protocol::Tcp,
        };
        if let Some(v6) = p.host_ip6 {
            let l = std::net::TcpListener::bind((v6, p.host_port)).map_err(|e| {
                anyhow!(
                    "service {:?} cannot publish port {}/tcp on [{v6}]:{}: {e}",
                    rec.service().unwrap_or(&rec.name),
                    p.container_port,
                    p.host_port
                )
            })?;
            ports.push(l.local_addr()?.port());
            // The listener is the reservation; the proxy's thread keeps it for our lifetime.
            if let Some(ip) = rec.networks.first().map(|n| n.ip) {
                crate::net::proxy::serve(l, std::net::SocketAddr::from((ip, p.container_port)))?;
            } else {
                held.push(OwnedFd::from(l));
            }
            continue;
        }
        let last = p.host_port_end.unwrap_or(p.host_port);
        let (fd, port) = crate::net::reserve_range(p.host_ip, p.host_port, last, proto)
            .with_context(|| {
                format!(
                    "service {:?} cannot publish port {}/{}",
                    rec.service().unwrap_or(&rec.name),
                    p.container_port,
                    p.protocol
                )
            })?;
        held.push(fd);
        ports.push(port);
    }
    Ok((held, ports))
}

/// Ports published on every address are also served on `[::1]` by a userland proxy (kernel
/// DNAT cannot take IPv6 to an IPv4 container). A host without IPv6 loopback simply has none.
fn proxy_loopback6(rec: &ContainerRecord, bound: &[u16]) {
    let Some(ip) = rec.networks.first().map(|n| n.ip) else {
        return;
    };
    for (p, port) in rec.ports.iter().zip(bound) {
        if p.host_ip.is_none() && p.host_ip6.is_none() && p.protocol == "tcp" {
            let target = std::net::SocketAddr::from((ip, p.container_port));
            if let Err(e) = crate::net::proxy::serve_loopback6(*port, target) {
                tracing::debug!("no [::1]:{port} for {}: {e}", rec.name);
            }
        }
    }
}

/// Starts the container's resolver, when it has a network. A failure is logged to the state's
/// error and the container runs without it (names still resolve through `/etc/hosts`).
fn resolver(paths: &Paths, rec: &ContainerRecord) -> Option<(crate::net::dns::Server, Peers)> {
    if rec.networks.is_empty() {
        return None;
    }
    let config: crate::net::dns::DnsConfig = read_json(&paths.container(&rec.id).join("dns.json"))
        .ok()
        .flatten()
        .unwrap_or_else(|| crate::net::dns::DnsConfig {
            upstreams: crate::net::dns::nameservers(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            ),
            forward: true,
        });
    match crate::net::dns::Server::bind(&paths.netns(&rec.id), config) {
        Ok(server) => Some((server, Peers::new(paths, &rec.id))),
        Err(e) => {
            tracing::warn!("container {}: no DNS resolver at 127.0.0.11: {e}", rec.name);
            None
        }
    }
}

/// The resolver's names, from the running containers' records under `data/containers`. Read
/// again when the directory changes (a container created or removed) and at most every 200 ms
/// otherwise (a container stopped or started).
struct Peers {
    paths: Paths,
    id: String,
    stamp: Option<std::time::SystemTime>,
    read_at: Option<Instant>,
    names: crate::net::dns::Names,
}

impl Peers {
    fn new(paths: &Paths, id: &str) -> Peers {
        Peers {
            paths: paths.clone(),
            id: id.to_string(),
            stamp: None,
            read_at: None,
            names: Default::default(),
        }
    }
}

impl crate::net::dns::NameSource for Peers {
    fn names(&mut self) -> &crate::net::dns::Names {
        let stamp = std::fs::metadata(self.paths.containers())
            .and_then(|m| m.modified())
            .ok();
        let fresh = self
            .read_at
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200));
        if stamp != self.stamp || !fresh {
            let peers: Vec<crate::net::dns::Peer> = super::container::list(&self.paths)
                .unwrap_or_default()
                .into_iter()
                .filter(|c| {
                    c.id == self.id
                        || super::container::load_state(&self.paths, &c.id)
                            .is_ok_and(|s| s.status == Status::Running)
                })
                .map(|c| crate::net::dns::Peer {
                    id: c.id,
                    name: c.name,
                    networks6: c
                        .networks
                        .iter()
                        .filter_map(|n| Some((n.network.clone(), n.ip6?)))
                        .collect(),
                    networks: c
                        .networks
                        .into_iter()
                        .map(|n| (n.network, n.ip, n.aliases))
                        .collect(),
                })
                .collect();
            self.names = crate::net::dns::names_for(&self.id, &peers);
            self.stamp = stamp;
            self.read_at = Some(Instant::now());
        }
        &self.names
    }
}
