//! Container records: what a container is (`container.json`, written by the CLI before anything
//! is created, so `down` can always find and undo it) and how it is doing (`state.json`, written
//! by its shim).
use crate::state::{Paths, StateError, read_json, write_json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The containers other than `rec` that `mode` names: `service:NAME` (that service's
/// containers in `rec`'s project, one-offs left out) or `container:NAME` (by name or id
/// prefix); `None` when `mode` is neither form.
fn named_containers(
    paths: &Paths,
    rec: &ContainerRecord,
    mode: &str,
) -> Result<Option<Vec<ContainerRecord>>, String> {
    let all = list(paths).map_err(|e| e.to_string())?;
    let others = all.into_iter().filter(|c| c.id != rec.id);
    Ok(if let Some(service) = mode.strip_prefix("service:") {
        Some(
            others
                .filter(|c| {
                    c.project().is_some()
                        && c.project() == rec.project()
                        && c.service() == Some(service)
                        && c.label(labels::ONEOFF) != Some("True")
                })
                .collect(),
        )
    } else {
        mode.strip_prefix("container:").map(|name| {
            others
                .filter(|c| c.name == name || c.id.starts_with(name))
                .collect()
        })
    })
}

/// The running container whose namespaces `mode` (`service:NAME`, `container:NAME`) names,
/// for `rec`, with its init's verified host pid. `service:` looks in `rec`'s project.
pub fn namespace_donor(
    paths: &Paths,
    rec: &ContainerRecord,
    mode: &str,
) -> Result<(ContainerRecord, i32), String> {
    let Some(candidates) = named_containers(paths, rec, mode)? else {
        return Err(format!("{mode:?} names no container"));
    };
    if candidates.is_empty() {
        return Err(format!("{mode:?}: no such container"));
    }
    candidates
        .into_iter()
        .find_map(|c| {
            let st = load_state(paths, &c.id).ok()?;
            let pid = st
                .pid
                .filter(|_| crate::sys::proc::alive(st.pid, st.pid_start))?;
            Some((c, pid))
        })
        .ok_or_else(|| format!("{mode:?}: its container is not running"))
}

/// Docker's restart backoff: the wait before a restart, from the wait before the previous one
/// (`None` at the first) and how long the container ran: 100 ms, doubling up to a minute, and
/// 100 ms again after a run of 10 s or more.
pub fn restart_delay(
    previous: Option<std::time::Duration>,
    ran_for: std::time::Duration,
) -> std::time::Duration {
    use std::time::Duration;
    match previous {
        Some(p) if ran_for < Duration::from_secs(10) => (p * 2).min(Duration::from_secs(60)),
        _ => Duration::from_millis(100),
    }
}

/// The container whose mounts `from` (`service:NAME` of `rec`'s project, its first replica, or
/// `container:NAME`) names for `volumes_from`; it need not run.
pub fn mounts_donor(
    paths: &Paths,
    rec: &ContainerRecord,
    from: &str,
) -> Result<ContainerRecord, String> {
    let mut found = named_containers(paths, rec, from)?.unwrap_or_default();
    found.sort_by_key(|c| c.label(labels::NUMBER).and_then(|n| n.parse::<u32>().ok()));
    found
        .into_iter()
        .next()
        .ok_or_else(|| format!("{from:?}: no such container"))
}

/// The definition of a container, fixed at creation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    /// The image as the user named it (`busybox`).
    pub image: String,
    /// `sha256:<config digest>`.
    pub image_id: String,
    /// Restart policy and healthcheck, carried out by the shim.
    #[serde(default)]
    pub supervision: Supervision,
    pub created: String,
    /// `com.docker.compose.*` and user labels.
    pub labels: BTreeMap<String, String>,
    pub process: ProcessSpec,
    pub hostname: String,
    /// Unpacked image layers, lowest first.
    pub layers: Vec<PathBuf>,
    pub mounts: Vec<Mount>,
    pub networks: Vec<NetworkAttachment>,
    pub ports: Vec<PublishedPort>,
    /// Privileges, confinement, limits and stop settings.
    #[serde(default)]
    pub host: super::hostconfig::HostConfig,
}

/// What the shim does while the container lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Supervision {
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub healthcheck: Option<HealthSpec>,
    /// How much of its output the shim keeps (`logging.options`).
    #[serde(default)]
    pub logs: super::logs::LogLimits,
}

/// Docker's restart policies.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure {
        /// 0 means no limit.
        #[serde(default)]
        max_retries: u32,
    },
}

impl RestartPolicy {
    /// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        Some(match s {
            "no" | "" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure { max_retries: 0 },
            s => RestartPolicy::OnFailure {
                max_retries: s.strip_prefix("on-failure:")?.parse().ok()?,
            },
        })
    }

    /// Whether a container that exited with `code` after `restarts` restarts is started again.
    /// A stop asked for by the user never is.
    pub fn restarts(&self, code: i32, restarts: u32, stop_requested: bool) -> bool {
        if stop_requested {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max_retries } => {
                code != 0 && (*max_retries == 0 || restarts < *max_retries)
            }
        }
    }
}

/// A healthcheck, with the command already in exec form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthSpec {
    pub args: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
    pub start_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Mount {
    /// Host path (bind, a named volume's `_data`, or a `subpath` below it).
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
    /// The named volume this mount comes from, if any.
    #[serde(default)]
    pub volume: Option<String>,
    /// Leave a new empty volume empty instead of copying the image's content at the target
    /// into it (`nocopy`; also with a `subpath`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nocopy: bool,
    /// Bind propagation as the user wrote it (`rprivate` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    /// Mount this directory of the volume (`volume.subpath`), resolved at each start, when it
    /// must exist (another container may have made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    /// An anonymous volume (`- /data`, or the image's `VOLUME`): a volume of its own with a
    /// random name, given to the container that replaces this one on a recreate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkAttachment {
    /// Host-side network name (`hello_default`).
    pub network: String,
    pub ip: Ipv4Addr,
    /// On an IPv6 network (`enable_ipv6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<std::net::Ipv6Addr>,
    /// The host end of the veth pair.
    pub host_ifname: String,
    pub ifname: String,
    pub aliases: Vec<String>,
    /// The container end's MAC address (`aa:bb:…`); absent in records of an older berth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The IPv4 address the service asked for (`ipv4_address`, `network connect --ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_ip: Option<Ipv4Addr>,
    /// The IPv6 address it asked for (`ipv6_address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_ip6: Option<std::net::Ipv6Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishedPort {
    pub host_ip: Option<Ipv4Addr>,
    /// An IPv6 host address (`[::1]:8080:80`): served by the shim's userland proxy only, with
    /// no IPv4 reservation or DNAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip6: Option<std::net::Ipv6Addr>,
    /// 0 asks for a free port; the shim reports which one it got in `State::ports`.
    pub host_port: u16,
    /// A host range `host_port..=host_port_end`: the first free port of it (so replicas of a
    /// scaled service share the range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port_end: Option<u16>,
    pub container_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

/// How the container is doing; written by the shim.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct State {
    pub status: Status,
    /// The container's init, in the host pid namespace.
    pub pid: Option<i32>,
    /// Its start time (field 22 of /proc/PID/stat), so a reused pid is never signalled.
    pub pid_start: Option<u64>,
    pub shim_pid: Option<i32>,
    pub shim_start: Option<u64>,
    pub exit_code: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Host ports actually bound, in the order of `ContainerRecord::ports`.
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default)]
    pub health: Option<Health>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// Health as Docker reports it: status, failing streak and the last results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    pub log: Vec<HealthResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

impl ContainerRecord {
    pub fn dir(&self, paths: &Paths) -> PathBuf {
        paths.container(&self.id)
    }
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
    pub fn project(&self) -> Option<&str> {
        self.label(labels::PROJECT)
    }
    pub fn service(&self) -> Option<&str> {
        self.label(labels::SERVICE)
    }
    pub fn save(&self, paths: &Paths) -> Result<(), StateError> {
        let dir = self.dir(paths);
        if !dir.exists() {
            // A new container: its directory goes to a block group of its own (see there).
            let _ = crate::sys::fsat::spread_subdirs(&paths.containers());
        }
        write_json(&dir.join("container.json"), self)
    }
    pub fn state(&self, paths: &Paths) -> Result<State, StateError> {
        load_state(paths, &self.id)
    }
}

pub fn load_state(paths: &Paths, id: &str) -> Result<State, StateError> {
    let path = paths.container(id).join("state.json");
    let state: State = read_json(&path)?.unwrap_or_default();
    if !state.orphaned() {
        return Ok(state);
    }
    // The shim records the exit and then ends: between our read and the liveness checks it
    // may have done both. Only a second read, made after both were seen dead, can tell a
    // recorded exit from a killed shim.
    let again: State = read_json(&path)?.unwrap_or_default();
    Ok(again.checked())
}

impl State {
    /// A `running` state whose shim and init are both gone (a kill -9, a reboot) reads as exited.
    fn checked(mut self) -> State {
        if self.orphaned() {
            self.status = Status::Exited;
            self.exit_code.get_or_insert(137);
        }
        self
    }
    /// `running` on record with neither the init nor the shim alive. While the shim lives it
    /// will record the real exit code: trust it, not a guess.
    fn orphaned(&self) -> bool {
        self.status == Status::Running
            && !crate::sys::proc::alive(self.pid, self.pid_start)
            && !crate::sys::proc::alive(self.shim_pid, self.shim_start)
    }
    /// Whether the shim that supervises this container still runs.
    pub fn shim_alive(&self) -> bool {
        crate::sys::proc::alive(self.shim_pid, self.shim_start)
    }
    pub fn save(&self, paths: &Paths, id: &str) -> Result<(), StateError> {
        write_json(&paths.container(id).join("state.json"), self)
    }
}

/// Every container record under this root.
pub fn list(paths: &Paths) -> Result<Vec<ContainerRecord>, StateError> {
    let dir = paths.containers();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StateError::Io { path: dir, source }),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        if let Some(rec) = read_json::<ContainerRecord>(&e.path().join("container.json"))? {
            out.push(rec);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes the directories a killed `up` or `run` left in `containers/` before its first
/// record was written: nothing in them but `write_json`'s temporary file of a process that no
/// longer runs. No record names them, so no `down` would. A directory being made right now
/// holds the temporary file of a live process, or nothing yet, and is left alone.
pub fn sweep_unrecorded(paths: &Paths) {
    let Ok(entries) = std::fs::read_dir(paths.containers()) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        if dir.join("container.json").exists() {
            continue;
        }
        let Ok(inside) = std::fs::read_dir(&dir) else {
            continue;
        };
        let names: Vec<String> = inside
            .flatten()
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .collect();
        let dead_tmp = |n: &String| {
            n.strip_prefix(".container.json.tmp")
                .and_then(|pid| pid.parse::<i32>().ok())
                .is_some_and(|pid| {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                        == Err(nix::errno::Errno::ESRCH)
                })
        };
        if !names.is_empty() && names.iter().all(dead_tmp) {
            for n in &names {
                let _ = std::fs::remove_file(dir.join(n));
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// The `com.docker.compose.*` labels, with docker compose's meanings.
pub mod labels {
    pub const PROJECT: &str = "com.docker.compose.project";
    pub const SERVICE: &str = "com.docker.compose.service";
    pub const NUMBER: &str = "com.docker.compose.container-number";
    pub const ONEOFF: &str = "com.docker.compose.oneoff";
    pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
    pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
    pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
    pub const VERSION: &str = "com.docker.compose.version";
    pub const NETWORK: &str = "com.docker.compose.network";
    pub const VOLUME: &str = "com.docker.compose.volume";
    pub const DEPENDS_ON: &str = "com.docker.compose.depends_on";
    pub const IMAGE: &str = "com.docker.compose.image";
}

#[cfg(test)]
mod tests {

    /// Only a dead process's half-made directory goes; one being made, one with a record and
    /// an empty one (made a moment ago, its file not written yet) stay.
    #[test]
    fn sweep_removes_only_what_a_dead_process_half_made() {
        let t = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(t.path()));
        let c = paths.containers();
        let make = |name: &str, file: Option<String>| {
            std::fs::create_dir_all(c.join(name)).unwrap();
            if let Some(f) = file {
                std::fs::write(c.join(name).join(f), b"{").unwrap();
            }
        };
        make("dead", Some(format!(".container.json.tmp{}", i32::MAX)));
        make(
            "alive",
            Some(format!(".container.json.tmp{}", std::process::id())),
        );
        make("recorded", Some("container.json".into()));
        make("empty", None);
        sweep_unrecorded(&paths);
        let mut left: Vec<String> = std::fs::read_dir(&c)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["alive", "empty", "recorded"]);
    }
    use super::{Paths, State, Status, load_state, restart_delay, sweep_unrecorded};
    use std::time::Duration;

    /// A shim records the exit and ends while a reader is between reading `running` and
    /// finding both processes dead: the reader reports the recorded code, never a guessed 137.
    #[test]
    fn an_exit_recorded_as_the_shim_ends_is_never_read_as_killed() {
        let t = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(t.path()));
        let id = "c";
        std::fs::create_dir_all(paths.container(id)).unwrap();
        for round in 0..60 {
            let mut shim = std::process::Command::new("sleep")
                .arg("10")
                .spawn()
                .unwrap();
            let pid = shim.id() as i32;
            let running = State {
                status: Status::Running,
                shim_pid: Some(pid),
                shim_start: crate::sys::proc::start_time(pid),
                ..Default::default()
            };
            running.save(&paths, id).unwrap();
            let reader = std::thread::spawn({
                let paths = paths.clone();
                move || {
                    loop {
                        let st = load_state(&paths, id).unwrap();
                        if st.status == Status::Exited {
                            return st.exit_code;
                        }
                    }
                }
            });
            std::thread::sleep(Duration::from_micros(200 + 37 * round));
            let exited = State {
                status: Status::Exited,
                exit_code: Some(0),
                ..running.clone()
            };
            exited.save(&paths, id).unwrap();
            shim.kill().unwrap();
            shim.wait().unwrap();
            assert_eq!(reader.join().unwrap(), Some(0), "round {round}");
        }
    }

    #[test]
    fn restart_backoff_doubles_to_a_minute_and_resets_after_ten_seconds_up() {
        let ms = Duration::from_millis;
        let mut d = None;
        let mut seen = Vec::new();
        for _ in 0..12 {
            let next = restart_delay(d, ms(50));
            seen.push(next.as_millis());
            d = Some(next);
        }
        assert_eq!(
            seen,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000
            ]
        );
        // A run of 10 s or more starts over; 9.9 s does not.
        assert_eq!(restart_delay(d, ms(10_000)), ms(100));
        assert_eq!(restart_delay(Some(ms(400)), ms(9_900)), ms(800));
    }
}
