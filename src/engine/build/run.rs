//! RUN: a short-lived container of berth's own runtime on the step's layers. Its overlay upper
//! directory becomes the step's layer; its output is passed on line by line.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::container::{ContainerRecord, ProcessSpec, Status, load_state};
use crate::engine::logs::{LOG_FILE, Record};
use crate::engine::rootfs::Overlay;
use crate::engine::runtime;
use crate::state::Paths;

/// The network namespace of a RUN step (`RUN --network=…`, `build --network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNetwork {
    /// `default`: a namespace of its own on the build network (a bridge with outbound NAT,
    /// see [`super::network`]), as Docker's build steps have; the host's loopback is not in it.
    Private,
    /// `host`: the host's namespace (its loopback and its routes).
    Host,
    /// `none`: a private namespace with only `lo`.
    None,
}

impl RunNetwork {
    pub fn parse(s: &str) -> Option<RunNetwork> {
        match s {
            "default" => Some(RunNetwork::Private),
            "host" => Some(RunNetwork::Host),
            "none" => Some(RunNetwork::None),
            _ => None,
        }
    }
}

/// What to run.
pub struct RunSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub network: RunNetwork,
    /// Extra `/etc/hosts` lines: (name, IP).
    pub extra_hosts: Vec<(String, String)>,
    /// `/dev/shm` size in bytes.
    pub shm_size: Option<u64>,
    /// RUN `--mount`s: binds (context, stages, caches, secrets) and tmpfs.
    pub mounts: Vec<crate::engine::container::Mount>,
    pub tmpfs: Vec<crate::engine::hostconfig::Tmpfs>,
    /// The build's id, as the container's owner label (see `reap`).
    pub owner: String,
}

/// Runs `spec` on `layers` (lowest first) and writes the changes as a layer tar to `tar_out`.
/// Returns whether anything changed.
pub fn run_step(
    paths: &Paths,
    layers: &[PathBuf],
    empty: &Path,
    spec: &RunSpec,
    tar_out: &Path,
    out: &mut dyn FnMut(&str),
) -> Result<bool, String> {
    let id = crate::state::new_id();
    let layers = if layers.is_empty() {
        vec![empty.to_owned()]
    } else {
        layers.to_vec()
    };
    let mut rec = ContainerRecord {
        supervision: Default::default(),
        host: crate::engine::hostconfig::HostConfig {
            shm_size: spec.shm_size,
            extra_hosts: spec.extra_hosts.clone(),
            tmpfs: spec.tmpfs.clone(),
            ..Default::default()
        },
        id: id.clone(),
        name: format!("berth-build-{}", &id[..12]),
        image: String::new(),
        image_id: String::new(),
        created: crate::engine::logs::now(),
        labels: BTreeMap::from([
            ("berth.build".to_string(), "true".to_string()),
            (super::reap::OWNER_LABEL.to_string(), spec.owner.clone()),
        ]),
        process: ProcessSpec {
            args: spec.args.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
        },
        hostname: id[..12].to_string(),
        layers,
        mounts: spec.mounts.clone(),
        networks: Vec::new(),
        ports: Vec::new(),
    };
    let guard = Cleanup {
        paths,
        rec: rec.clone(),
    };
    let netns = paths.netns(&id);
    // The step's place on the build network: its veth and address go when this is dropped,
    // on every return.
    let mut _attachment = None;
    let resolv = match spec.network {
        RunNetwork::Host => {
            host_netns(&netns)?;
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
        }
        RunNetwork::None => {
            crate::net::create_netns(&netns).map_err(|e| e.to_string())?;
            String::new()
        }
        RunNetwork::Private => {
            crate::net::create_netns(&netns).map_err(|e| e.to_string())?;
            let (att, resolv) = super::network::attach(paths, &id, &netns)?;
            _attachment = Some(att);
            resolv
        }
    };
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{}\n{}",
        rec.hostname,
        rec.host.extra_hosts_lines(None)
    );
    runtime::prepare(paths, &rec, &hosts, &resolv).map_err(|e| e.to_string())?;
    let merged = Overlay::new(&rec.dir(paths)).merged;
    let (uid, gid) = super::fsops::resolve_user(&merged, &spec.user)?;
    rec.process.uid = uid;
    rec.process.gid = gid;
    super::fsops::ensure_dir(&merged, &spec.cwd)?;
    rec.save(paths).map_err(|e| e.to_string())?;
    runtime::start(paths, &rec).map_err(|e| e.to_string())?;
    let code = wait_exit(paths, &rec, out)?;
    Overlay::new(&rec.dir(paths))
        .unmount()
        .map_err(|e| e.to_string())?;
    if code != 0 {
        return Err(format!(
            "process {:?} did not complete successfully: exit code: {code}",
            spec.args.join(" ")
        ));
    }
    let upper = Overlay::new(&rec.dir(paths)).upper;
    for target in spec
        .mounts
        .iter()
        .map(|m| &m.target)
        .chain(spec.tmpfs.iter().map(|t| &t.target))
    {
        super::mounts::prune_stub(&upper, target);
    }
    let changed = super::layer::write_layer(&upper, tar_out, true)
        .map_err(|e| format!("writing the layer: {e}"))?;
    drop(guard);
    Ok(changed)
}

/// Polls the shim's state until the container exited, passing its log on.
fn wait_exit(
    paths: &Paths,
    rec: &ContainerRecord,
    out: &mut dyn FnMut(&str),
) -> Result<i32, String> {
    let log = rec.dir(paths).join(LOG_FILE);
    let mut pos = 0u64;
    let mut pause = Duration::from_millis(1);
    loop {
        let st = load_state(paths, &rec.id).map_err(|e| e.to_string())?;
        pos = forward(&log, pos, out);
        // A state read as exited while the shim still lives is the init's death seen before
        // the shim recorded the code; wait for the shim's own record.
        if st.status == Status::Exited && !crate::sys::proc::alive(st.shim_pid, st.shim_start) {
            let st = load_state(paths, &rec.id).map_err(|e| e.to_string())?;
            // The shim drains the pipes before it records the exit.
            forward(&log, pos, out);
            return Ok(st.exit_code.unwrap_or(255));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn forward(log: &Path, pos: u64, out: &mut dyn FnMut(&str)) -> u64 {
    let Ok(mut f) = std::fs::File::open(log) else {
        return pos;
    };
    if f.seek(SeekFrom::Start(pos)).is_err() {
        return pos;
    }
    let mut r = BufReader::new(f);
    let mut pos = pos;
    let mut line = String::new();
    while let Ok(n) = r.read_line(&mut line) {
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Ok(rec) = serde_json::from_str::<Record>(&line) {
            out(rec.log.trim_end_matches('\n'));
        }
        line.clear();
    }
    pos
}

/// Keeps the host's network namespace at `path` (`RUN --network=host`).
fn host_netns(path: &Path) -> Result<(), String> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    nix::mount::mount(
        Some("/proc/self/ns/net"),
        path,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        format!(
            "binding the host network namespace on {}: {e}",
            path.display()
        )
    })
}

/// Stops and removes the build container and its namespace, whatever happened.
struct Cleanup<'a> {
    paths: &'a Paths,
    rec: ContainerRecord,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if load_state(self.paths, &self.rec.id).is_ok_and(|s| s.status == Status::Running) {
            let _ = runtime::stop(self.paths, &self.rec, Duration::from_secs(1));
        }
        let _ = runtime::remove(self.paths, &self.rec);
        let _ = crate::net::netns::remove_netns(&self.paths.netns(&self.rec.id));
    }
}
