//! Running another process in a running container (`berth exec`, healthchecks).
//!
//! libcontainer's tenant builder joins the container's namespaces and cgroup; the new process
//! becomes a child of the caller, so the caller reaps it and gets its exit code. The caller must
//! be single-threaded (the CLI before any runtime starts, or the shim): libcontainer clones it.
use super::container::ContainerRecord;
use crate::state::Paths;
use libcontainer::container::builder::ContainerBuilder;
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
}

/// Starts `spec` in the container with the given stdio; returns the new process's pid.
pub fn spawn(
    paths: &Paths,
    rec: &ContainerRecord,
    spec: &ExecSpec,
    stdio: [OwnedFd; 3],
) -> Result<Pid, ExecError> {
    let st = rec.state(paths).map_err(|e| ExecError::Failed {
        name: rec.name.clone(),
        message: e.to_string(),
    })?;
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
    let [stdin, stdout, stderr] = stdio;
    let fail = |e: libcontainer::error::LibcontainerError| ExecError::Failed {
        name: rec.name.clone(),
        message: e.to_string(),
    };
    ContainerBuilder::new(rec.id.clone(), SyscallType::default())
        .with_root_path(paths.runtime())
        .map_err(fail)?
        .with_stdin(stdin)
        .with_stdout(stdout)
        .with_stderr(stderr)
        .as_tenant()
        .with_container_args(spec.args.clone())
        .with_env(env)
        .with_cwd(Some(
            spec.cwd.clone().unwrap_or_else(|| rec.process.cwd.clone()),
        ))
        .with_user(Some(spec.uid.unwrap_or(rec.process.uid)))
        .with_group(Some(spec.gid.unwrap_or(rec.process.gid)))
        .with_detach(true)
        .build()
        .map_err(fail)
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
