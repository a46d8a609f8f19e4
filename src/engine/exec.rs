//! Running another process in a running container (`berth exec`, healthchecks).
//!
//! libcontainer's tenant builder joins the container's namespaces and cgroup; the new process
//! becomes a child of the caller, so the caller reaps it and gets its exit code. The caller must
//! be single-threaded (the CLI before any runtime starts, or the shim): libcontainer clones it.
//!
//! Two things libcontainer 0.7's tenant path does not do are done here: the container's
//! seccomp filter is loaded by our executor right before the exec (the tenant spec has no
//! seccomp, so an exec'd process would run unfiltered), and a terminal is a pty made inside the
//! container's devpts whose master comes back over a console socket ([`spawn_tty`]).
use super::container::ContainerRecord;
use crate::state::Paths;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::os::fd::OwnedFd;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("container {name} is not running")]
    NotRunning { name: String },
    #[error("cannot exec in container {name}: {message}")]
    Failed { name: String, message: String },
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// Added to (and overriding) the container's environment.
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Supplementary groups of `uid` (`exec -u`); without `uid`, the container's.
    pub additional_gids: Option<Vec<u32>>,
    /// Every capability berth holds (`exec --privileged`); the seccomp filter stays.
    pub privileged: bool,
}

/// `CAP_*` names of every capability a privileged process gets.
fn all_capabilities() -> Vec<String> {
    let privileged = super::hostconfig::HostConfig {
        privileged: true,
        ..Default::default()
    };
    super::spec::capabilities(&privileged, super::spec::held_capabilities())
        .unwrap_or_default()
        .into_iter()
        .map(super::spec::cap_name)
        .collect()
}

/// Starts `spec` in the container with the given stdio; returns the new process's pid.
pub fn spawn(
    paths: &Paths,
    rec: &ContainerRecord,
    spec: &ExecSpec,
    stdio: [OwnedFd; 3],
) -> Result<Pid, ExecError> {
    start(paths, rec, spec, Some(stdio)).map(|(pid, _)| pid)
}

/// Starts `spec` on a new terminal of the container; returns the pid and the pty's master.
pub fn spawn_tty(
    paths: &Paths,
    rec: &ContainerRecord,
    spec: &ExecSpec,
) -> Result<(Pid, OwnedFd), ExecError> {
    let (pid, master) = start(paths, rec, spec, None)?;
    master.map(|m| (pid, m)).ok_or_else(|| ExecError::Failed {
        name: rec.name.clone(),
        message: "no terminal came back from the container".into(),
    })
}

/// `stdio: None` asks for a terminal.
fn start(
    paths: &Paths,
    rec: &ContainerRecord,
    spec: &ExecSpec,
    stdio: Option<[OwnedFd; 3]>,
) -> Result<(Pid, Option<OwnedFd>), ExecError> {
    let failed = |message: String| ExecError::Failed {
        name: rec.name.clone(),
        message,
    };
    let st = rec.state(paths).map_err(|e| failed(e.to_string()))?;
    if st.status != super::container::Status::Running {
        return Err(ExecError::NotRunning {
            name: rec.name.clone(),
        });
    }
    let mut env: HashMap<String, String> = rec
        .process
        .env
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.extend(spec.env.iter().cloned());
    let cwd = spec.cwd.clone().unwrap_or_else(|| rec.process.cwd.clone());
    let (uid, gid) = (
        spec.uid.unwrap_or(rec.process.uid),
        spec.gid.unwrap_or(rec.process.gid),
    );
    // The spec the container was started with: its seccomp filter, and the process a
    // terminal session is based on.
    let bundle = paths.container(&rec.id).join("bundle").join("config.json");
    let init_spec =
        Spec::load(&bundle).map_err(|e| failed(format!("{}: {e}", bundle.display())))?;
    let executor = super::seccomp::bpf::for_exec(&paths.container(&rec.id), &init_spec)
        .map_err(|e| failed(e.to_string()))?;
    let fail = |e: libcontainer::error::LibcontainerError| failed(e.to_string());
    let builder = ContainerBuilder::new(rec.id.clone(), SyscallType::default())
        .with_root_path(paths.runtime())
        .map_err(fail)?
        .with_executor(executor);
    start_process(
        paths,
        rec,
        builder,
        &init_spec,
        spec,
        env,
        (cwd, uid, gid),
        stdio,
    )
}

/// The process is given as a `process.json`: the container's own process (so it keeps the
/// container's rlimits, capabilities and the rest, as `docker exec` does) with our args, env,
/// cwd and user. Without `stdio` it asks for `terminal: true`, and libcontainer sends the pty
/// master to a console socket we listen on.
#[allow(clippy::too_many_arguments)]
fn start_process(
    paths: &Paths,
    rec: &ContainerRecord,
    builder: ContainerBuilder,
    init_spec: &Spec,
    spec: &ExecSpec,
    env: HashMap<String, String>,
    (cwd, uid, gid): (String, u32, u32),
    stdio: Option<[OwnedFd; 3]>,
) -> Result<(Pid, Option<OwnedFd>), ExecError> {
    let failed = |message: String| ExecError::Failed {
        name: rec.name.clone(),
        message,
    };
    let mut process = init_spec
        .process()
        .clone()
        .ok_or_else(|| failed("the container's spec has no process".into()))?;
    process.set_args(Some(spec.args.clone()));
    process.set_env(Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()));
    process.set_cwd(cwd.into());
    let mut user = process.user().clone();
    if spec.uid.is_some() || spec.gid.is_some() {
        // Another user than the container's: that user's supplementary groups.
        user.set_additional_gids(spec.additional_gids.clone());
    }
    user.set_uid(uid);
    user.set_gid(gid);
    process.set_user(user);
    process.set_terminal(Some(stdio.is_none()));
    if let Some(c) = process.capabilities().clone() {
        process.set_capabilities(Some(super::seccomp::bpf::exec_capabilities(c)));
    }
    if spec.privileged {
        let all: std::collections::HashSet<_> = all_capabilities()
            .iter()
            .filter_map(|c| super::spec::parse_cap(c).ok())
            .collect();
        let caps = libcontainer::oci_spec::runtime::LinuxCapabilitiesBuilder::default()
            .bounding(all.clone())
            .effective(all.clone())
            .permitted(all)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        process.set_capabilities(Some(caps));
    }
    // The seccomp load in our executor needs it without CAP_SYS_ADMIN.
    process.set_no_new_privileges(Some(true));
    let dir = paths.container(&rec.id);
    let json = dir.join(format!("exec-{:016x}.json", rand::random::<u64>()));
    let _cleanup = RemoveOnDrop(json.clone());
    std::fs::write(
        &json,
        serde_json::to_vec(&process).map_err(|e| failed(e.to_string()))?,
    )
    .map_err(|e| failed(format!("{}: {e}", json.display())))?;
    if let Some([stdin, stdout, stderr]) = stdio {
        let pid = builder
            .with_stdin(stdin)
            .with_stdout(stdout)
            .with_stderr(stderr)
            .as_tenant()
            .with_process(Some(&json))
            .with_detach(true)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        return Ok((pid, None));
    }
    let console = ConsoleSocket::bind(&dir).map_err(|e| failed(e.to_string()))?;
    let pid = builder
        .with_console_socket(Some(console.path()))
        .as_tenant()
        .with_process(Some(&json))
        .with_detach(true)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let master = console
        .receive()
        .map_err(|e| failed(format!("console socket: {e}")))?;
    Ok((pid, Some(master)))
}

/// Where libcontainer sends a terminal's master: a socket in the container's directory,
/// removed when dropped.
pub struct ConsoleSocket {
    listener: std::os::unix::net::UnixListener,
    short: std::path::PathBuf,
    _dir: std::fs::File,
    _file: RemoveOnDrop,
}

impl ConsoleSocket {
    pub fn bind(dir: &std::path::Path) -> std::io::Result<ConsoleSocket> {
        let name = format!("console-{:016x}.sock", rand::random::<u64>());
        // A socket path must fit in 108 bytes: name it through a descriptor of its directory.
        let dir_fd = std::fs::File::open(dir)?;
        let short = std::path::PathBuf::from(format!(
            "/proc/self/fd/{}/{name}",
            std::os::fd::AsRawFd::as_raw_fd(&dir_fd)
        ));
        let listener = std::os::unix::net::UnixListener::bind(&short)?;
        Ok(ConsoleSocket {
            listener,
            short,
            _dir: dir_fd,
            _file: RemoveOnDrop(dir.join(name)),
        })
    }

    /// The path to give libcontainer (valid in this process only).
    pub fn path(&self) -> &std::path::Path {
        &self.short
    }

    /// The master, once libcontainer has connected (it does before the process starts, so
    /// after the build this does not block).
    pub fn receive(&self) -> std::io::Result<OwnedFd> {
        let (conn, _) = self.listener.accept()?;
        crate::sys::pty::receive_fd(&conn)
    }
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits for a process started by [`spawn`] and returns its exit code (128+signal if killed).
pub fn wait(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// Duplicates the caller's stdin, stdout and stderr for handing to a container process.
pub fn own_stdio() -> std::io::Result<[OwnedFd; 3]> {
    use std::os::fd::AsFd;
    Ok([
        std::io::stdin().as_fd().try_clone_to_owned()?,
        std::io::stdout().as_fd().try_clone_to_owned()?,
        std::io::stderr().as_fd().try_clone_to_owned()?,
    ])
}
