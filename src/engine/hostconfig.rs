//! How a container is confined and configured beyond its process: privileges, seccomp, devices,
//! tmpfs mounts, sysctls, ulimits, resource limits, namespaces shared with the host, and what
//! the stop code needs (signal, grace period). Docker calls this `HostConfig`.
//!
//! The one decision to know: everything here is already validated and in canonical units
//! (bytes, microseconds, `CAP_*` names) when the CLI writes the record, so the shim only
//! translates it into the OCI spec and never fails on user input.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Every field defaults to Docker's default, so records written before a field existed load.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HostConfig {
    /// All capabilities, all host devices, no seccomp, no masked paths, writable `/sys`.
    pub privileged: bool,
    /// `CAP_*` names, or `ALL`.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub seccomp: Seccomp,
    pub no_new_privileges: bool,
    /// No masked or read-only `/proc` and `/sys` paths (`security_opt: systempaths=unconfined`).
    pub systempaths_unconfined: bool,
    /// Removed once it exits, by a process its shim starts (`run -d --rm`).
    pub auto_remove: bool,
    /// The writable layer is thrown away with the container (`run --rm`), so the overlay is
    /// mounted `volatile`: no sync of the host filesystem at every sync call and at unmount.
    pub volatile_rootfs: bool,
    /// The root filesystem is mounted read-only.
    pub read_only: bool,
    pub tmpfs: Vec<Tmpfs>,
    /// Size of `/dev/shm` in bytes; `None` is Docker's 64 MiB.
    pub shm_size: Option<u64>,
    pub devices: Vec<Device>,
    /// Namespaced sysctls only (checked when the record is made).
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: Vec<Ulimit>,
    pub domainname: Option<String>,
    /// `(host, ip)` lines for `/etc/hosts`; the ip may be `host-gateway`, which the hosts
    /// writer replaces with the gateway of the container's first network.
    pub extra_hosts: Vec<(String, String)>,
    /// Share the host's pid namespace (`pid: host`).
    pub pid_host: bool,
    /// Share the host's ipc namespace (`ipc: host`).
    pub ipc_host: bool,
    /// Join another container's pid namespace when starting: `service:NAME` (of the same
    /// project) or `container:NAME`, as the user wrote it.
    pub pid_join: Option<String>,
    /// Join another container's ipc namespace when starting (`service:` or `container:`).
    pub ipc_join: Option<String>,
    /// `/dev/shm` is a tmpfs the shim mounts on the host (`shm` in the container's directory)
    /// and binds in, so a container joining this one's ipc namespace binds it too, as Docker
    /// does for `ipc: shareable` (also set for a service another one names in `ipc: service:`).
    pub ipc_shareable: bool,
    /// `volumes_from`, each as `service:NAME` or `container:NAME` with an optional `:ro` or
    /// `:rw`: that container's mounts, found when this one starts.
    pub volumes_from: Vec<String>,
    pub oom_score_adj: Option<i32>,
    /// `group_add` as the user wrote it (names or numbers): the process's groups already
    /// include them; kept for `exec -u USER`, which adds them to that user's groups as Docker
    /// does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// Run a reaper as pid 1 (`init: true`); recorded for the shim.
    pub init: bool,
    /// The process gets a terminal (`tty: true`); its output is logged from the pty.
    pub tty: bool,
    /// Stdin stays open, never at end of file (`stdin_open: true`).
    pub stdin_open: bool,
    /// The signal `stop` sends first (`SIGTERM` when unset), as the user wrote it.
    pub stop_signal: Option<String>,
    /// How long `stop` waits before SIGKILL, in milliseconds (10 s when unset).
    pub stop_grace_period_ms: Option<u64>,
    pub resources: Resources,
}

impl HostConfig {
    /// The `extra_hosts` lines of `/etc/hosts`, `host-gateway` replaced by `gateway` (the
    /// gateway of the container's first network; entries for it are left out without one).
    pub fn extra_hosts_lines(&self, gateway: Option<std::net::Ipv4Addr>) -> String {
        let mut out = String::new();
        for (host, ip) in &self.extra_hosts {
            let ip = match (ip.as_str(), gateway) {
                ("host-gateway", Some(g)) => g.to_string(),
                ("host-gateway", None) => continue,
                (ip, _) => ip.to_string(),
            };
            out.push_str(&format!("{ip}\t{host}\n"));
        }
        out
    }
}

/// Which seccomp filter the container gets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Seccomp {
    /// berth's default profile (`src/engine/seccomp/default.json`), filtered by capabilities.
    #[default]
    Default,
    Unconfined,
    /// An OCI `linux.seccomp` object read from the user's file when the record was made.
    Profile(serde_json::Value),
}

/// A tmpfs mount (`tmpfs:` entries or `volumes` of type tmpfs).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Tmpfs {
    pub target: String,
    /// Mount options other than size and mode (`ro`, `noexec`, `uid=1000`, …).
    pub options: Vec<String>,
    pub size: Option<u64>,
    pub mode: Option<u32>,
}

/// A host device made available in the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Device {
    pub host: PathBuf,
    pub container: String,
    /// Some of `rwm`.
    pub permissions: String,
}

/// An rlimit, by its compose name (`nofile`, `nproc`, …).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Cgroup limits in canonical units; `None` leaves the kernel's default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Resources {
    /// Bytes.
    pub memory: Option<i64>,
    /// Memory plus swap in bytes; `-1` is unlimited swap.
    pub memory_swap: Option<i64>,
    /// Bytes.
    pub memory_reservation: Option<i64>,
    pub memory_swappiness: Option<u64>,
    pub oom_kill_disable: bool,
    /// Relative weight (Docker's default 1024).
    pub cpu_shares: Option<u64>,
    /// Microseconds per period.
    pub cpu_quota: Option<i64>,
    /// Microseconds.
    pub cpu_period: Option<u64>,
    /// `0-3`, `1,3`.
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
}

/// `SIGUSR1`, `usr1`, `USR1` or `10`.
pub fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_hosts_resolve_the_gateway() {
        let h = HostConfig {
            extra_hosts: vec![
                ("db".into(), "10.0.0.9".into()),
                ("host.docker.internal".into(), "host-gateway".into()),
            ],
            ..Default::default()
        };
        assert_eq!(
            h.extra_hosts_lines(Some("172.20.0.1".parse().unwrap())),
            "10.0.0.9\tdb\n172.20.0.1\thost.docker.internal\n"
        );
        assert_eq!(h.extra_hosts_lines(None), "10.0.0.9\tdb\n");
    }

    #[test]
    fn old_records_load_with_docker_defaults() {
        let h: HostConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(h, HostConfig::default());
        assert_eq!(h.seccomp, Seccomp::Default);
    }
}
