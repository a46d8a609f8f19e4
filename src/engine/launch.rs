//! berth's own create and start of a container's init, for the common container.
//!
//! libcontainer's create takes 9–12 ms here: its intermediate process builds a cgroup v1
//! manager (two dozen reads of the mount table), every path it touches goes through
//! component-by-component checks, and the in-container cgroup mounts read the mount table
//! again per controller. This module does the same work the way crun does, in one child:
//!
//! 1. the shim (the parent) makes the container's cgroup on every hierarchy (one read of the
//!    mount table), writes the device rules, and clones the child into new mount, UTS, IPC
//!    and pid namespaces;
//! 2. the parent puts the child in the cgroup and lets it go on; the child enters its network
//!    (and a joined IPC) namespace, takes a cgroup namespace of its own, mounts the spec's
//!    mounts inside the root filesystem (every target resolved by `openat2(RESOLVE_IN_ROOT)`
//!    and mounted through its descriptor, so a symlink in an image cannot send a mount
//!    outside), makes `/dev`, pivots into the root, masks and write-protects the spec's paths,
//!    sets the hostname, sysctls, rlimits, user and capabilities;
//! 3. the child reports "ready" and waits for "go" (`start`), loads the seccomp program, drops
//!    the `CAP_SYS_ADMIN` kept only for that load, and execs.
//!
//! What it does not do falls back to libcontainer, decided by [`plan`]: a terminal, a joined
//! pid namespace, cgroup v2 (its device filter is eBPF), limits other than memory, CPU and
//! pids (block I/O, huge pages), hooks, user namespaces, and a seccomp filter that is not a
//! ready program. The
//! runtime state libcontainer keeps for `exec` and `pause` is written through its own API, so
//! those work on either kind of container. `BERTH_RUNTIME=libcontainer` forces the fallback.
use super::seccomp::bpf::LoadFilter;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};
use std::ffi::{CString, OsStr};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Set to `libcontainer` to start every container through libcontainer.
pub const RUNTIME_ENV: &str = "BERTH_RUNTIME";

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0}")]
    Setup(String),
    #[error("the container's init failed: {0}")]
    Child(String),
}

fn setup(what: impl std::fmt::Display, e: impl std::fmt::Display) -> LaunchError {
    LaunchError::Setup(format!("{what}: {e}"))
}

/// A mount of the spec, ready for the child.
#[derive(Debug)]
struct MountStep {
    kind: MountKind,
    source: Option<CString>,
    /// Inside the root filesystem, relative to it.
    target: PathBuf,
    fstype: Option<CString>,
    flags: MsFlags,
    data: Option<CString>,
    /// A bind of something that is not a directory: the target is made as a file.
    file: bool,
}

#[derive(Debug, PartialEq)]
enum MountKind {
    Bind,
    Fs,
    /// `/sys/fs/cgroup` on a v1 host: a tmpfs with each hierarchy mounted in it.
    CgroupV1,
}

/// A v1 hierarchy as the container mounts it: its name under `/sys/fs/cgroup` and the mount
/// options that select it (`memory`, `cpu,cpuacct`, `name=systemd`).
#[derive(Debug, Clone)]
struct Hierarchy {
    name: CString,
    options: CString,
}

/// A symlink: its name and its target.
type Link = (CString, CString);

/// A device node the child makes under `/dev`.
#[derive(Debug)]
struct Node {
    /// Below `/dev`.
    path: PathBuf,
    kind: nix::sys::stat::SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Everything the child needs, made in the parent before the clone: the child only makes
/// system calls with it.
pub struct Plan {
    id: String,
    rootfs: PathBuf,
    readonly_root: bool,
    clone_flags: CloneFlags,
    /// Namespaces to enter, by path: (file, kind).
    join: Vec<(PathBuf, CloneFlags)>,
    cgroupns: bool,
    mounts: Vec<MountStep>,
    hierarchies: Vec<Hierarchy>,
    /// Symlinks in `/sys/fs/cgroup` (`cpu` → `cpu,cpuacct`).
    cgroup_links: Vec<Link>,
    nodes: Vec<Node>,
    masked: Vec<PathBuf>,
    readonly: Vec<PathBuf>,
    hostname: Option<String>,
    domainname: Option<String>,
    sysctl: Vec<(PathBuf, String)>,
    rlimits: Vec<(nix::sys::resource::Resource, u64, u64)>,
    oom_score_adj: Option<i32>,
    no_new_privs: bool,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    umask: u32,
    cwd: PathBuf,
    args: Vec<CString>,
    env: Vec<String>,
    bounding: caps::CapsHashSet,
    effective: caps::CapsHashSet,
    permitted: caps::CapsHashSet,
    inheritable: caps::CapsHashSet,
    ambient: caps::CapsHashSet,
    filter: LoadFilter,
    /// The container's cgroup, relative to each hierarchy's root.
    cgroup: PathBuf,
    /// Lines for `devices.deny` (false) and `devices.allow` (true), in order.
    device_rules: Vec<(bool, String)>,
    /// Limits: (controller, file, value), written in order.
    limits: Vec<(&'static str, &'static str, String)>,
}

/// libcgroups adds these to every container's device list after the spec's rules; so do we,
/// so that a container has the same devices whichever way it was started.
const DEFAULT_DEVICE_RULES: &[&str] = &[
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:9 rwm",
    "c 1:8 rwm",
    "c 5:0 rwm",
    "c *:* m",
    "b *:* m",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
];

/// The device nodes every container has (as runc and libcontainer make them).
const DEFAULT_NODES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// How the container of `spec` (as given to libcontainer, with `filter` its seccomp step)
/// is started by this module, or why it is not (then libcontainer starts it).
pub fn plan(id: &str, spec: &Spec, filter: &LoadFilter) -> Result<Plan, String> {
    if std::env::var(RUNTIME_ENV).is_ok_and(|v| v == "libcontainer") {
        return Err(format!("{RUNTIME_ENV}=libcontainer"));
    }
    let process = spec.process().as_ref().ok_or("no process")?;
    let linux = spec.linux().as_ref().ok_or("no linux section")?;
    if process.terminal() == Some(true) {
        return Err("a terminal".into());
    }
    if spec.hooks().is_some() {
        return Err("hooks".into());
    }
    if filter.spec_filter.is_some() || linux.seccomp().is_some() {
        return Err("a seccomp filter that is not a ready program".into());
    }
    if linux.uid_mappings().is_some()
        || linux.gid_mappings().is_some()
        || linux.personality().is_some()
        || linux.intel_rdt().is_some()
        || linux.rootfs_propagation().is_some()
        || process.apparmor_profile().is_some()
        || process.selinux_label().is_some()
        || process.scheduler().is_some()
        || process.io_priority().is_some()
    {
        return Err("a setting this runtime does not handle".into());
    }
    if !cgroup_v1_host() {
        return Err("not a cgroup v1 host".into());
    }
    // The device list, memory, CPU and pids limits; the rest through libcgroups.
    let limits = match linux.resources() {
        Some(r) => {
            let handled = r.block_io().is_none()
                && r.hugepage_limits().as_ref().is_none_or(|v| v.is_empty())
                && r.network().is_none()
                && r.rdma().is_none()
                && r.unified().as_ref().is_none_or(|m| m.is_empty())
                && r.cpu().as_ref().is_none_or(|c| {
                    c.realtime_runtime().is_none()
                        && c.realtime_period().is_none()
                        && c.idle().is_none()
                        && c.burst().is_none()
                })
                && r.memory().as_ref().is_none_or(|m| {
                    m.kernel().is_none()
                        && m.kernel_tcp().is_none()
                        && m.use_hierarchy().is_none()
                        && m.check_before_update().is_none()
                });
            if !handled {
                return Err("resource limits beyond memory, CPU and pids".into());
            }
            limit_files(r)
        }
        None => Vec::new(),
    };
    let mut clone_flags = CloneFlags::empty();
    let mut join = Vec::new();
    let mut cgroupns = false;
    let mut has_mount_ns = false;
    for ns in linux.namespaces().iter().flatten() {
        let flag = match ns.typ() {
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Mount => {
                has_mount_ns = true;
                CloneFlags::CLONE_NEWNS
            }
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Cgroup => {
                if ns.path().is_some() {
                    return Err("a joined cgroup namespace".into());
                }
                cgroupns = true;
                continue;
            }
            _ => return Err(format!("a {:?} namespace", ns.typ())),
        };
        match ns.path() {
            Some(p) if flag == CloneFlags::CLONE_NEWPID => {
                return Err(format!("a joined pid namespace ({})", p.display()));
            }
            Some(p) => join.push((p.clone(), flag)),
            None => clone_flags |= flag,
        }
    }
    if !has_mount_ns {
        return Err("no mount namespace".into());
    }
    let root = spec.root().as_ref().ok_or("no root")?;
    let rootfs = root.path().clone();

    let mut mounts = Vec::new();
    let mut hierarchies = Vec::new();
    let mut cgroup_links = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let typ = m.typ().as_deref().unwrap_or("bind");
        let options = m.options().clone().unwrap_or_default();
        let (mut flags, data) = mount_options(&options)?;
        let target = m
            .destination()
            .strip_prefix("/")
            .map_err(|_| format!("mount target {} is not absolute", m.destination().display()))?
            .to_path_buf();
        if target
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(format!("mount target {} has ..", m.destination().display()));
        }
        let cstr = |s: &OsStr| CString::new(s.as_bytes()).map_err(|e| e.to_string());
        let step = match typ {
            "bind" => {
                let source = m.source().as_ref().ok_or("a bind without a source")?;
                if options.iter().any(|o| o == "rbind") {
                    flags |= MsFlags::MS_REC;
                }
                let file = !std::fs::metadata(source)
                    .map(|s| s.is_dir())
                    .unwrap_or(true);
                MountStep {
                    kind: MountKind::Bind,
                    source: Some(cstr(source.as_os_str())?),
                    target,
                    fstype: None,
                    flags,
                    data: None,
                    file,
                }
            }
            "cgroup" => {
                if hierarchies.is_empty() {
                    (hierarchies, cgroup_links) = v1_hierarchies()?;
                }
                MountStep {
                    kind: MountKind::CgroupV1,
                    source: None,
                    target,
                    fstype: None,
                    flags,
                    data: None,
                    file: false,
                }
            }
            "proc" | "sysfs" | "tmpfs" | "devpts" | "mqueue" => MountStep {
                kind: MountKind::Fs,
                source: Some(cstr(
                    m.source()
                        .as_deref()
                        .map_or(OsStr::new(typ), |s| s.as_os_str()),
                )?),
                target,
                fstype: Some(cstr(OsStr::new(typ))?),
                flags,
                data: data.map(|d| cstr(OsStr::new(&d))).transpose()?,
                file: false,
            },
            other => return Err(format!("a mount of type {other}")),
        };
        mounts.push(step);
    }

    let mut nodes: Vec<Node> = DEFAULT_NODES
        .iter()
        .map(|(name, major, minor)| Node {
            path: PathBuf::from(name),
            kind: nix::sys::stat::SFlag::S_IFCHR,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect();
    for d in linux.devices().iter().flatten() {
        let path = d
            .path()
            .strip_prefix("/dev")
            .map_err(|_| format!("device {} is not under /dev", d.path().display()))?
            .to_path_buf();
        if path.as_os_str().is_empty()
            || path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(format!("device path {}", d.path().display()));
        }
        let kind = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::B => nix::sys::stat::SFlag::S_IFBLK,
            oci_spec::runtime::LinuxDeviceType::P => nix::sys::stat::SFlag::S_IFIFO,
            _ => nix::sys::stat::SFlag::S_IFCHR,
        };
        nodes.retain(|n| n.path != path);
        nodes.push(Node {
            path,
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }

    let rel = |p: &String| PathBuf::from(p.trim_start_matches('/'));
    let user = process.user();
    let caps = process.capabilities().clone().unwrap_or_default();
    let set = |s: &Option<oci_spec::runtime::Capabilities>| -> Result<caps::CapsHashSet, String> {
        s.iter()
            .flatten()
            .map(|c| {
                super::spec::cap_name(*c)
                    .parse::<caps::Capability>()
                    .map_err(|e| e.to_string())
            })
            .collect()
    };
    let args: Vec<CString> = process
        .args()
        .iter()
        .flatten()
        .map(|a| CString::new(a.as_bytes()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    if args.is_empty() {
        return Err("no command".into());
    }
    let mut env = process.env().clone().unwrap_or_default();
    if env.iter().any(|e| !e.contains('=') || e.contains('\0')) {
        return Err("an environment entry without =".into());
    }
    env.dedup();
    let mut rlimits = Vec::new();
    for r in process.rlimits().iter().flatten() {
        rlimits.push((rlimit_resource(r.typ()), r.soft(), r.hard()));
    }
    let mut device_rules: Vec<(bool, String)> = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default()
        .iter()
        .map(|d| (d.allow(), d.to_string()))
        .collect();
    device_rules.extend(DEFAULT_DEVICE_RULES.iter().map(|r| (true, r.to_string())));
    Ok(Plan {
        id: id.to_string(),
        rootfs,
        readonly_root: root.readonly() == Some(true),
        clone_flags,
        join,
        cgroupns,
        mounts,
        hierarchies,
        cgroup_links,
        nodes,
        masked: linux.masked_paths().iter().flatten().map(rel).collect(),
        readonly: linux.readonly_paths().iter().flatten().map(rel).collect(),
        hostname: spec.hostname().clone(),
        domainname: spec.domainname().clone(),
        sysctl: linux
            .sysctl()
            .iter()
            .flatten()
            .map(|(k, v)| {
                (
                    PathBuf::from("/proc/sys").join(k.replace('.', "/")),
                    v.clone(),
                )
            })
            .collect(),
        rlimits,
        oom_score_adj: process.oom_score_adj(),
        no_new_privs: process.no_new_privileges() == Some(true),
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().iter().flatten().copied().collect(),
        umask: user.umask().unwrap_or(0o022),
        cwd: process.cwd().clone(),
        args,
        env,
        bounding: set(caps.bounding())?,
        effective: set(caps.effective())?,
        permitted: set(caps.permitted())?,
        inheritable: set(caps.inheritable())?,
        ambient: set(caps.ambient())?,
        filter: filter.clone(),
        cgroup: linux
            .cgroups_path()
            .clone()
            .ok_or("no cgroups path")?
            .strip_prefix("/")
            .map(Path::to_path_buf)
            .map_err(|_| "a relative cgroups path")?,
        device_rules,
        limits,
    })
}

/// The v1 cgroup files that set `r`'s memory, CPU and pids limits, in the order they must be
/// written: `(controller, file, value)`. A limit of -1 or less is "unlimited".
fn limit_files(r: &oci_spec::runtime::LinuxResources) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    let amount = |v: i64| {
        if v < 0 {
            "-1".to_string()
        } else {
            v.to_string()
        }
    };
    if let Some(m) = r.memory() {
        if let Some(v) = m.limit() {
            out.push(("memory", "memory.limit_in_bytes", amount(v)));
        }
        if let Some(v) = m.swap() {
            out.push(("memory", "memory.memsw.limit_in_bytes", amount(v)));
        }
        if let Some(v) = m.reservation() {
            out.push(("memory", "memory.soft_limit_in_bytes", amount(v)));
        }
        if let Some(v) = m.swappiness() {
            out.push(("memory", "memory.swappiness", v.to_string()));
        }
        if m.disable_oom_killer() == Some(true) {
            out.push(("memory", "memory.oom_control", "1".into()));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(v) = c.shares() {
            out.push(("cpu", "cpu.shares", v.to_string()));
        }
        // The period before the quota: a quota is checked against the period in place.
        if let Some(v) = c.period() {
            out.push(("cpu", "cpu.cfs_period_us", v.to_string()));
        }
        if let Some(v) = c.quota() {
            out.push(("cpu", "cpu.cfs_quota_us", amount(v)));
        }
        if let Some(v) = c.cpus() {
            out.push(("cpuset", "cpuset.cpus", v.clone()));
        }
        if let Some(v) = c.mems() {
            out.push(("cpuset", "cpuset.mems", v.clone()));
        }
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".to_string()
        };
        out.push(("pids", "pids.max", v));
    }
    out
}

fn rlimit_resource(t: PosixRlimitType) -> nix::sys::resource::Resource {
    use nix::sys::resource::Resource as R;
    match t {
        PosixRlimitType::RlimitCpu => R::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => R::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => R::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => R::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => R::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => R::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => R::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => R::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => R::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => R::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => R::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => R::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => R::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => R::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => R::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => R::RLIMIT_RTTIME,
    }
}

/// `/sys/fs/cgroup` is a tmpfs of v1 hierarchies (a legacy or hybrid host), not cgroup2.
fn cgroup_v1_host() -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    nix::sys::statfs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type().0 == TMPFS_MAGIC)
}

/// The host's v1 hierarchies under `/sys/fs/cgroup` (from one read of the mount table), and
/// the symlinks there (`cpu` → `cpu,cpuacct`).
fn v1_hierarchies() -> Result<(Vec<Hierarchy>, Vec<Link>), String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let hierarchies = super::cgroups::v1_hierarchies(&table)
        .into_iter()
        .filter_map(|(name, options)| {
            Some(Hierarchy {
                name: CString::new(name).ok()?,
                options: CString::new(options).ok()?,
            })
        })
        .collect();
    Ok((
        hierarchies,
        std::fs::read_dir("/sys/fs/cgroup")
            .map_err(|e| e.to_string())?
            .flatten()
            .filter_map(|e| {
                let target = std::fs::read_link(e.path()).ok()?;
                Some((
                    CString::new(e.file_name().as_bytes()).ok()?,
                    CString::new(target.as_os_str().as_bytes()).ok()?,
                ))
            })
            .collect(),
    ))
}

/// The OCI mount options as `mount(2)` flags and the data string (what is not a flag), read
/// as a volume's `o` option is ([`super::volume::MountOptions::parse`]). `bind`/`rbind` and
/// propagation are left out: the kind of mount says the first, and the shim applies the
/// propagation from outside once the init exists ([`super::rootfs::set_bind_propagation`]).
fn mount_options(options: &[String]) -> Result<(MsFlags, Option<String>), String> {
    let parsed = super::volume::MountOptions::parse(&options.join(","))?;
    let flags = parsed.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
    Ok((flags, (!parsed.data.is_empty()).then_some(parsed.data)))
}

/// A created container: its init waits for [`Created::start`].
pub struct Created {
    pid: Pid,
    go: Option<OwnedFd>,
    cgroup: PathBuf,
}

impl Created {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Lets the init exec its process.
    pub fn start(&mut self) -> Result<(), LaunchError> {
        let go = self
            .go
            .take()
            .ok_or_else(|| LaunchError::Setup("started twice".into()))?;
        nix::unistd::write(&go, b"g").map_err(|e| setup("starting the container", e))?;
        Ok(())
    }

    /// Kills the init (never started, or failed) and reaps it; removes its cgroup.
    pub fn discard(mut self) {
        self.go = None;
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
        let _ = super::cgroups::remove(&self.cgroup);
    }
}

/// Creates the container of `plan`: its init is ready and waits for [`Created::start`].
/// `stdio` are the init's stdin, stdout and stderr. `runtime_dir` receives the state that
/// libcontainer's `exec` and `pause` read; `bundle` holds the spec (`config.json`).
pub fn create(
    plan: &Plan,
    spec: &Spec,
    stdio: [OwnedFd; 3],
    runtime_dir: &Path,
    bundle: &Path,
) -> Result<Created, LaunchError> {
    // The cgroup first: its directories (made already by an early shim) and device rules.
    let cgroup = PathBuf::from("/").join(&plan.cgroup);
    let fail = |e: LaunchError| {
        let _ = super::cgroups::remove(&cgroup);
        e
    };
    let dirs = super::cgroups::make(&plan.cgroup)
        .map_err(|e| fail(setup(format!("making cgroup {}", cgroup.display()), e)))?;
    let mut procs_files = Vec::new();
    let mut written = vec![false; plan.limits.len()];
    let mut devices_done = false;
    for dir in dirs {
        // The device rules go to the hierarchy that has the files, wherever it is mounted.
        if dir.join("devices.allow").exists() {
            devices_done = true;
            for (allow, rule) in &plan.device_rules {
                let file = dir.join(if *allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                });
                std::fs::write(&file, rule)
                    .map_err(|e| fail(setup(format!("{} ({rule})", file.display()), e)))?;
            }
        }
        // Each limit's file is in the hierarchy of its controller, whatever that one's
        // mount point is called (`cpu` or `cpu,cpuacct`).
        for (i, (_, file, value)) in plan.limits.iter().enumerate() {
            let path = dir.join(file);
            if !path.exists() {
                continue;
            }
            std::fs::write(&path, value)
                .map_err(|e| fail(setup(format!("{} ({value})", path.display()), e)))?;
            written[i] = true;
        }
        procs_files.push(dir.join("cgroup.procs"));
    }
    // Never a container without its device rules.
    if !devices_done && !plan.device_rules.is_empty() {
        return Err(fail(LaunchError::Setup(
            "this host has no devices cgroup controller for the device rules".into(),
        )));
    }
    for ((controller, file, _), done) in plan.limits.iter().zip(&written) {
        // Without swap accounting there is no memsw file: the memory limit alone, as Docker
        // does on such a kernel.
        if !done && *file != "memory.memsw.limit_in_bytes" {
            return Err(fail(LaunchError::Setup(format!(
                "this host has no {controller} cgroup controller for {file}"
            ))));
        }
    }
    crate::sys::timing::mark("launch cgroup made");
    let (c2p_r, c2p_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail(setup("pipe", e)))?;
    let (p2c_r, p2c_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail(setup("pipe", e)))?;
    let fds = ChildFds {
        stdio: [
            stdio[0].as_raw_fd(),
            stdio[1].as_raw_fd(),
            stdio[2].as_raw_fd(),
        ],
        report: c2p_w.as_raw_fd(),
        wait: p2c_r.as_raw_fd(),
        parent_ends: [c2p_r.as_raw_fd(), p2c_w.as_raw_fd()],
    };
    let pid = crate::sys::child::clone_child(
        plan.clone_flags | CloneFlags::CLONE_NEWNS,
        Box::new(|| -> isize { child_main(plan, &fds) }),
    )
    .map_err(|e| fail(setup("cloning the container's init", e)))?;
    crate::sys::timing::mark("launch cloned");
    drop(stdio);
    drop(c2p_w);
    drop(p2c_r);
    let created = Created {
        pid,
        go: Some(p2c_w),
        cgroup: cgroup.clone(),
    };
    let result = (|| {
        for f in &procs_files {
            std::fs::write(f, pid.as_raw().to_string())
                .map_err(|e| setup(format!("joining {}", f.display()), e))?;
        }
        crate::sys::timing::mark("launch joined");
        let go = created.go.as_ref().map(|f| f.as_fd());
        if let Some(go) = go {
            nix::unistd::write(go, b"c").map_err(|e| setup("waking the init", e))?;
        }
        // Written while the init sets itself up.
        record(plan, spec, pid, runtime_dir, bundle)?;
        let mut report = Vec::new();
        std::fs::File::from(c2p_r)
            .read_to_end(&mut report)
            .map_err(|e| setup("reading the init's report", e))?;
        match report.split_first() {
            Some((b'0', _)) => Ok(()),
            Some((_, message)) => Err(LaunchError::Child(
                String::from_utf8_lossy(message).into_owned(),
            )),
            None => Err(LaunchError::Child("it ended without a word".into())),
        }
    })();
    if let Err(e) = result {
        created.discard();
        return Err(e);
    }
    Ok(created)
}

/// The state libcontainer keeps of a container (`state.json`, `youki_config.json`), written
/// through its own types: its tenant builder (`exec`) and `pause` load them.
fn record(
    plan: &Plan,
    spec: &Spec,
    pid: Pid,
    runtime_dir: &Path,
    bundle: &Path,
) -> Result<(), LaunchError> {
    std::fs::create_dir_all(runtime_dir).map_err(|e| setup(runtime_dir.display(), e))?;
    let mut c = libcontainer::container::Container::new(
        &plan.id,
        libcontainer::container::ContainerStatus::Created,
        Some(pid.as_raw()),
        bundle,
        runtime_dir,
    )
    .map_err(|e| setup("recording the container", e))?;
    c.set_systemd(false);
    c.save().map_err(|e| setup("recording the container", e))?;
    libcontainer::config::YoukiConfig::from_spec(spec, &plan.id)
        .and_then(|y| y.save(runtime_dir))
        .map_err(|e| setup("recording the container's config", e))?;
    Ok(())
}

/// Marks the recorded container running (what libcontainer's `start` records).
pub fn record_started(runtime_dir: &Path) {
    if let Ok(mut c) = libcontainer::container::Container::load(runtime_dir.to_path_buf()) {
        c.set_status(libcontainer::container::ContainerStatus::Running);
        let _ = c.save();
    }
}

struct ChildFds {
    stdio: [RawFd; 3],
    report: RawFd,
    wait: RawFd,
    /// The parent's ends of the two pipes, which the clone copied: closed at once, so that
    /// the shim's death (before the start) reads as end of file and ends the init.
    parent_ends: [RawFd; 2],
}

/// The init, from the clone to the exec. Reports its first failure to the parent.
fn child_main(plan: &Plan, fds: &ChildFds) -> isize {
    // Open in the parent at the clone; this copy of its table owns them once.
    let report = crate::sys::child::adopt_fd(fds.report);
    let wait = crate::sys::child::adopt_fd(fds.wait);
    for fd in fds.parent_ends {
        drop(crate::sys::child::adopt_fd(fd));
    }
    match prepare(plan, fds, &wait) {
        Ok(exe) => {
            let _ = nix::unistd::write(&report, b"0");
            drop(report);
            let err = run(plan, &wait, &exe);
            let _ = writeln!(std::io::stderr(), "berth: {err}");
            127
        }
        Err(e) => {
            let message = format!("1{e}");
            let _ = nix::unistd::write(&report, &message.as_bytes()[..message.len().min(4000)]);
            1
        }
    }
}

fn wait_byte(wait: &OwnedFd) -> Option<u8> {
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(wait.as_raw_fd(), &mut b) {
            Ok(1) => return Some(b[0]),
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return None,
        }
    }
}

/// Everything before the start: returns the path of the executable to run.
fn prepare(plan: &Plan, fds: &ChildFds, wait: &OwnedFd) -> Result<CString, String> {
    let err = |what: &dyn std::fmt::Display| {
        let what = what.to_string();
        move |e: nix::Error| format!("{what}: {e}")
    };
    // In the cgroup once the parent says so; then a cgroup namespace rooted there.
    if wait_byte(wait) != Some(b'c') {
        return Err("the shim went away".into());
    }
    for (path, flag) in &plan.join {
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        nix::sched::setns(f, *flag).map_err(err(&format_args!("joining {}", path.display())))?;
    }
    if plan.cgroupns {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(err(&"a cgroup namespace"))?;
    }
    crate::sys::timing::mark("init namespaces");
    for (i, fd) in fds.stdio.iter().enumerate() {
        if *fd != i as RawFd {
            nix::unistd::dup2(*fd, i as RawFd).map_err(err(&"stdio"))?;
        }
    }
    let _ = nix::unistd::setsid();
    // Nothing mounted here reaches the host; the host's later mounts still come in.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err(&"making / a slave"))?;
    mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err(&"binding the root filesystem"))?;
    let root = crate::sys::fsat::open(
        &plan.rootfs,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
    )
    .map_err(err(&plan.rootfs.display()))?;
    for m in &plan.mounts {
        mount_one(plan, root.as_fd(), m)?;
    }
    make_dev(plan, root.as_fd())?;
    crate::sys::timing::mark("init mounted");
    // Into the root: pivot onto itself, then detach the old root stacked beneath.
    nix::unistd::fchdir(root.as_raw_fd()).map_err(err(&"entering the root filesystem"))?;
    nix::unistd::pivot_root(".", ".").map_err(err(&"pivot_root"))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err(&"the old root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(err(&"detaching the old root"))?;
    nix::unistd::chdir("/").map_err(err(&"chdir /"))?;
    drop(root);
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h).map_err(err(&"the hostname"))?;
    }
    if let Some(d) = &plan.domainname {
        crate::sys::child::set_domainname(d).map_err(|e| format!("the domain name: {e}"))?;
    }
    for (path, value) in &plan.sysctl {
        std::fs::write(path, value).map_err(|e| format!("sysctl {}: {e}", path.display()))?;
    }
    if let Some(adj) = plan.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| format!("oom_score_adj: {e}"))?;
    }
    for p in &plan.masked {
        mask(p)?;
    }
    for p in &plan.readonly {
        readonly(p)?;
    }
    if plan.readonly_root {
        remount_readonly(Path::new("/"), MsFlags::empty()).map_err(err(&"a read-only /"))?;
    }
    for (resource, soft, hard) in &plan.rlimits {
        nix::sys::resource::setrlimit(*resource, *soft, *hard).map_err(err(&"rlimit"))?;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(plan.umask));
    nix::unistd::chdir(&plan.cwd).map_err(err(&format_args!(
        "the working directory {}",
        plan.cwd.display()
    )))?;
    let exe = executable(plan)?;
    set_user(plan)?;
    if plan.no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(err(&"no_new_privs"))?;
    }
    // Nothing of the shim's reaches the process.
    crate::sys::child::cloexec_from(3).map_err(|e| format!("close_range: {e}"))?;
    Ok(exe)
}

/// After the start: the seccomp program, then the exec. Returns only on a failure.
fn run(plan: &Plan, wait: &OwnedFd, exe: &CString) -> String {
    if wait_byte(wait) != Some(b'g') {
        // The shim discarded the container, or died.
        crate::sys::child::exit_now(0);
    }
    if let Some(p) = &plan.filter.program
        && let Err(e) = p.load()
    {
        return format!("loading the seccomp filter: {e}");
    }
    if plan.filter.drop_sys_admin {
        for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
            if let Err(e) = caps::drop(None, set, caps::Capability::CAP_SYS_ADMIN) {
                return format!("dropping CAP_SYS_ADMIN after seccomp: {e}");
            }
        }
    }
    let env: Vec<CString> = with_home(plan)
        .into_iter()
        .filter_map(|e| CString::new(e).ok())
        .collect();
    match nix::unistd::execve(exe, &plan.args, &env) {
        Ok(never) => match never {},
        Err(e) => format!("exec {:?}: {e}", plan.args[0]),
    }
}

/// The environment with `HOME` from the container's `/etc/passwd` when it has none.
fn with_home(plan: &Plan) -> Vec<String> {
    let mut env = plan.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 5 && f[2].parse() == Ok(plan.uid)).then(|| f[5].to_string())
                })
            })
            .unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    env
}

/// The executable `args[0]` names: a path, or the first match on the container's `PATH`.
fn executable(plan: &Plan) -> Result<CString, String> {
    let name = plan.args[0].to_bytes();
    let shown = String::from_utf8_lossy(name);
    if name.contains(&b'/') {
        // Checked now, so a missing one fails the start as with Docker, not the process.
        return match std::fs::metadata(OsStr::from_bytes(name)) {
            Ok(_) => Ok(plan.args[0].clone()),
            Err(e) => Err(format!("exec: {shown:?}: stat {shown}: {e}")),
        };
    }
    let path = plan
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .ok_or("PATH environment variable is not set")?;
    for dir in path.split(':') {
        let candidate = Path::new(dir).join(OsStr::from_bytes(name));
        if let Ok(m) = std::fs::metadata(&candidate)
            && m.is_file()
            && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        {
            return CString::new(candidate.as_os_str().as_bytes()).map_err(|e| e.to_string());
        }
    }
    Err(format!(
        "exec: {shown:?}: executable file not found in $PATH"
    ))
}

/// Groups, ids, then the capability sets (the bounding set first, while still root).
fn set_user(plan: &Plan) -> Result<(), String> {
    let e = |what: &'static str| move |e: caps::errors::CapsError| format!("{what}: {e}");
    for c in caps::all() {
        if !plan.bounding.contains(&c)
            && caps::has_cap(None, caps::CapSet::Bounding, c).unwrap_or(false)
        {
            caps::drop(None, caps::CapSet::Bounding, c).map_err(e("the bounding set"))?;
        }
    }
    nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("keepcaps: {e}"))?;
    crate::sys::child::set_ids(&plan.groups, plan.gid, plan.uid)
        .map_err(|e| format!("user {}:{}: {e}", plan.uid, plan.gid))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| format!("keepcaps: {e}"))?;
    // Effective within the (old) permitted set first, then permitted, which must hold it.
    caps::set(None, caps::CapSet::Effective, &plan.effective).map_err(e("the effective set"))?;
    caps::set(None, caps::CapSet::Permitted, &plan.permitted).map_err(e("the permitted set"))?;
    caps::set(None, caps::CapSet::Inheritable, &plan.inheritable)
        .map_err(e("the inheritable set"))?;
    caps::clear(None, caps::CapSet::Ambient).map_err(e("the ambient set"))?;
    for c in &plan.ambient {
        caps::raise(None, caps::CapSet::Ambient, *c).map_err(e("the ambient set"))?;
    }
    Ok(())
}

/// `/proc/self/fd/N` of `fd`: a mount there lands on exactly that file.
fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens `path` inside `root` (as if `root` were `/`), making it when missing: directories
/// along the way, and the last component a directory or an empty file.
fn ensure_in_root(root: BorrowedFd<'_>, path: &Path, file: bool) -> Result<OwnedFd, String> {
    use nix::fcntl::OFlag;
    let open = |p: &Path| {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        crate::sys::fsat::open_in_root(root, p, OFlag::O_PATH)
    };
    match open(path) {
        Ok(fd) => return Ok(fd),
        Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(format!("{}: cannot be made", path.display()));
    };
    let dir = ensure_in_root(root, parent, false)?;
    // The parent was opened O_PATH: make the entry through a real directory descriptor.
    let dir = crate::sys::fsat::open_at(
        dir.as_fd(),
        Path::new("."),
        OFlag::O_DIRECTORY | OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("{}: {e}", parent.display()))?;
    let made = if file {
        crate::sys::fsat::open_at(
            dir.as_fd(),
            Path::new(name),
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )
        .map(drop)
    } else {
        nix::sys::stat::mkdirat(
            Some(dir.as_raw_fd()),
            name,
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )
    };
    match made {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(format!("making {}: {e}", path.display())),
    }
    open(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn mount_one(plan: &Plan, root: BorrowedFd<'_>, m: &MountStep) -> Result<(), String> {
    let target = ensure_in_root(root, &m.target, m.file)?;
    let at = fd_path(target.as_fd());
    let what = |e: nix::Error| format!("mounting /{}: {e}", m.target.display());
    match m.kind {
        MountKind::Bind => {
            let recursive = m.flags & MsFlags::MS_REC;
            mount(
                m.source.as_deref(),
                &at,
                None::<&str>,
                MsFlags::MS_BIND | recursive,
                None::<&str>,
            )
            .map_err(what)?;
            let extra = m.flags - MsFlags::MS_REC;
            if !extra.is_empty() {
                // Reopened: the mount is on top of the descriptor's file now.
                let mounted = ensure_in_root(root, &m.target, m.file)?;
                remount_bind(&fd_path(mounted.as_fd()), extra).map_err(what)?;
            }
        }
        MountKind::Fs => {
            mount(
                m.source.as_deref(),
                &at,
                m.fstype.as_deref(),
                m.flags,
                m.data.as_deref(),
            )
            .map_err(what)?;
        }
        MountKind::CgroupV1 => {
            let ro = m.flags.contains(MsFlags::MS_RDONLY);
            let base = m.flags - MsFlags::MS_RDONLY;
            mount(Some("tmpfs"), &at, Some("tmpfs"), base, Some("mode=755")).map_err(what)?;
            let dir = ensure_in_root(root, &m.target, false)?;
            let dir = crate::sys::fsat::open_at(
                dir.as_fd(),
                Path::new("."),
                nix::fcntl::OFlag::O_DIRECTORY,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(what)?;
            for h in &plan.hierarchies {
                let name = Path::new(OsStr::from_bytes(h.name.to_bytes()));
                nix::sys::stat::mkdirat(
                    Some(dir.as_raw_fd()),
                    name,
                    nix::sys::stat::Mode::from_bits_truncate(0o755),
                )
                .map_err(what)?;
                let sub = crate::sys::fsat::open_at(
                    dir.as_fd(),
                    name,
                    nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(what)?;
                mount(
                    Some("cgroup"),
                    &fd_path(sub.as_fd()),
                    Some("cgroup"),
                    m.flags,
                    Some(h.options.as_c_str()),
                )
                .map_err(what)?;
            }
            for (name, target) in &plan.cgroup_links {
                let _ = nix::unistd::symlinkat(
                    Path::new(OsStr::from_bytes(target.to_bytes())),
                    Some(dir.as_raw_fd()),
                    Path::new(OsStr::from_bytes(name.to_bytes())),
                );
            }
            if ro {
                let again = ensure_in_root(root, &m.target, false)?;
                mount(
                    None::<&str>,
                    &fd_path(again.as_fd()),
                    None::<&str>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
                    Some("mode=755"),
                )
                .map_err(what)?;
            }
        }
    }
    Ok(())
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locks on it (a bind from
/// a `nosuid` or `nodev` mount cannot drop them).
fn remount_bind(at: &Path, flags: MsFlags) -> nix::Result<()> {
    let remount = |f: MsFlags| {
        mount(
            None::<&str>,
            at,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | f,
            None::<&str>,
        )
    };
    match remount(flags) {
        Err(nix::errno::Errno::EPERM) => remount(flags | locked_flags(at)),
        r => r,
    }
}

fn locked_flags(at: &Path) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let Ok(s) = nix::sys::statvfs::statvfs(at) else {
        return MsFlags::empty();
    };
    let f = s.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

fn remount_readonly(at: &Path, extra: MsFlags) -> nix::Result<()> {
    remount_bind(at, MsFlags::MS_RDONLY | extra)
}

/// The device nodes and links of `/dev` (a tmpfs of the spec's by now).
fn make_dev(plan: &Plan, root: BorrowedFd<'_>) -> Result<(), String> {
    let dev = ensure_in_root(root, Path::new("dev"), false)?;
    let dev = crate::sys::fsat::open_at(
        dev.as_fd(),
        Path::new("."),
        nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("/dev: {e}"))?;
    for n in &plan.nodes {
        let path = Path::new("dev").join(&n.path);
        if let Some(parent) = path.parent() {
            ensure_in_root(root, parent, false)?;
        }
        let _ = nix::unistd::unlinkat(
            Some(dev.as_raw_fd()),
            &n.path,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        nix::sys::stat::mknodat(
            Some(dev.as_raw_fd()),
            &n.path,
            n.kind,
            nix::sys::stat::Mode::from_bits_truncate(n.mode),
            nix::sys::stat::makedev(n.major, n.minor),
        )
        .map_err(|e| format!("making /dev/{}: {e}", n.path.display()))?;
        nix::sys::stat::fchmodat(
            Some(dev.as_raw_fd()),
            &n.path,
            nix::sys::stat::Mode::from_bits_truncate(n.mode),
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        )
        .or_else(|e| {
            // fchmodat without following is not supported everywhere; the node is no link.
            if e == nix::errno::Errno::EOPNOTSUPP {
                nix::sys::stat::fchmodat(
                    Some(dev.as_raw_fd()),
                    &n.path,
                    nix::sys::stat::Mode::from_bits_truncate(n.mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
            } else {
                Err(e)
            }
        })
        .map_err(|e| format!("/dev/{}: {e}", n.path.display()))?;
        nix::unistd::fchownat(
            Some(dev.as_raw_fd()),
            &n.path,
            Some(nix::unistd::Uid::from_raw(n.uid)),
            Some(nix::unistd::Gid::from_raw(n.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| format!("/dev/{}: {e}", n.path.display()))?;
    }
    let mut links = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("core", "/proc/kcore"));
    }
    for (name, target) in links {
        let _ = nix::unistd::unlinkat(
            Some(dev.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        nix::unistd::symlinkat(target, Some(dev.as_raw_fd()), name)
            .map_err(|e| format!("/dev/{name}: {e}"))?;
    }
    Ok(())
}

/// Hides `path`: an empty read-only tmpfs over a directory, `/dev/null` over anything else.
fn mask(path: &Path) -> Result<(), String> {
    let at = Path::new("/").join(path);
    let meta = match std::fs::symlink_metadata(&at) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("masking {}: {e}", at.display())),
    };
    let r = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            &at,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            &at,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    match r {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(format!("masking {}: {e}", at.display())),
    }
}

/// Makes `path` read-only (a bind onto itself, remounted).
fn readonly(path: &Path) -> Result<(), String> {
    let at = Path::new("/").join(path);
    match mount(
        Some(&at),
        &at,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(format!("read-only {}: {e}", at.display())),
    }
    remount_readonly(
        &at,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
    )
    .map_err(|e| format!("read-only {}: {e}", at.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_split_into_flags_and_data() {
        let o = |v: &[&str]| {
            mount_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        let (f, d) = o(&["nosuid", "noexec", "mode=755", "size=65536k", "rprivate"]);
        assert_eq!(f, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(d.as_deref(), Some("mode=755,size=65536k"));
        let (f, d) = o(&["ro", "rw", "rbind"]);
        assert_eq!(f, MsFlags::empty());
        assert_eq!(d, None);
    }
}
