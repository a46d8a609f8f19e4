//! Turns a container record into an OCI runtime spec (`bundle/config.json`) for libcontainer.
//!
//! The one decision to know: the defaults are Docker's, value for value (security.md §1):
//! 14 capabilities, the default seccomp profile filtered by those capabilities, the masked and
//! read-only `/proc` and `/sys` paths, a `/dev` tmpfs with the six standard nodes and a device
//! cgroup that denies the rest, and private namespaces. `privileged` lifts them the way Docker
//! does. Everything the user chose was validated when the record was made; what is checked
//! here is only what the host decides (device numbers, the current rlimits).
use super::container::ContainerRecord;
use super::hostconfig::{Device, HostConfig, Seccomp, Tmpfs};
use super::resources::{self, DeviceNode};
use crate::state::Paths;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceType, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxSeccomp, Mount, MountBuilder,
    PosixRlimit, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    UserBuilder,
};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Oci(#[from] oci_spec::OciSpecError),
    #[error("device {}: {source}", path.display())]
    Device {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device {}: not a character or block device", path.display())]
    NotADevice { path: PathBuf },
    #[error("seccomp profile: {0}")]
    SeccompProfile(serde_json::Error),
    #[error("unknown capability {0}")]
    Capability(String),
    #[error("cannot join the {kind} namespace of {reason}")]
    Join { kind: &'static str, reason: String },
    #[error("volumes_from {from}: {reason}")]
    VolumesFrom { from: String, reason: String },
    #[error("volume mounted at {target}: {reason}")]
    Subpath { target: String, reason: String },
    #[error("cannot add {0}: berth itself runs without it (see CapBnd in /proc/self/status)")]
    NotHeld(String),
}

/// Docker's default capability set (security.md §1.2).
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability Linux 6.x knows, for `privileged` and `cap_add: [ALL]`.
pub const ALL_CAPS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Masked paths of current moby (`daemon/pkg/oci/defaults.go`); security.md §1.4. The
/// `thermal_throttle` directories of every CPU are added by [`masked_paths`].
const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's default sysctls for a container with its own network namespace.
const DEFAULT_SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.ip_unprivileged_port_start", "0"),
    ("net.ipv4.ping_group_range", "0 2147483647"),
];

/// Docker's `DefaultShmSize`.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Builds the spec. `rootfs` is the mounted overlay; `dir` the container's state directory,
/// which holds the `hosts`, `hostname` and `resolv.conf` files bind-mounted into `/etc`.
pub fn build(
    rec: &ContainerRecord,
    paths: &Paths,
    rootfs: &Path,
    dir: &Path,
) -> Result<Spec, SpecError> {
    let host = &rec.host;
    let mut spec = Spec::default();
    let caps = capabilities(host, held_capabilities())?;
    let cap_set: HashSet<Capability> = caps.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(cap_set.clone())
        .effective(cap_set.clone())
        .permitted(cap_set)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let p = &rec.process;
    let user = UserBuilder::default()
        .uid(p.uid)
        .gid(p.gid)
        .additional_gids(p.additional_gids.clone())
        .build()?;
    let args = if host.init {
        super::init::wrap(&p.args)
    } else {
        p.args.clone()
    };
    let mut process = ProcessBuilder::default()
        .args(args)
        .env(p.env.clone())
        .cwd(p.cwd.clone())
        .user(user)
        .capabilities(capabilities)
        .no_new_privileges(host.no_new_privileges)
        .terminal(host.tty)
        .build()?;
    // libcontainer 0.7 decides when to load seccomp by whether `noNewPrivileges` is present,
    // not by its value: present means "after dropping capabilities", where loading a filter
    // without no_new_privs fails with EPERM. So it is left out unless it is true.
    if !host.no_new_privileges {
        process.set_no_new_privileges(None);
    }
    // Unset ulimits keep the limits berth runs with, as Docker's are the daemon's.
    process.set_rlimits(rlimits(host)?);
    process.set_oom_score_adj(host.oom_score_adj);
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(host.read_only)
            .build()?,
    ));
    spec.set_hostname(Some(rec.hostname.clone()));
    spec.set_domainname(host.domainname.clone());

    let mut mounts = default_mounts(host, shared_shm(rec, paths).as_deref())?;
    // The /etc files go with the user's mounts, sorted below: a volume mounted at /etc must
    // not cover them (Docker sorts them the same way); at equal depth they come first, so a
    // user's own bind of /etc/hosts wins.
    let mut user_mounts = Vec::new();
    for (file, target) in [
        ("hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        user_mounts.push(bind(&dir.join(file), target, host.read_only)?);
    }
    // `subpath`s are staged there, and unmounted once the container is created.
    let mut staging = (super::volume::subpaths_dir(dir), 0);
    for m in &rec.mounts {
        user_mounts.push(record_bind(m, m.read_only, &mut staging)?);
    }
    for t in &host.tmpfs {
        user_mounts.push(tmpfs(t)?);
    }
    // `volumes_from`: the other container's mounts at the same places, unless this container
    // mounts something there itself; `:ro`/`:rw` overrides their mode.
    for from in &host.volumes_from {
        let (who, mode) = match from.rsplit_once(':') {
            Some((w, m @ ("ro" | "rw"))) => (w, Some(m == "ro")),
            _ => (from.as_str(), None),
        };
        let donor = super::container::mounts_donor(paths, rec, who).map_err(|reason| {
            SpecError::VolumesFrom {
                from: from.clone(),
                reason,
            }
        })?;
        for m in donor.mounts {
            if user_mounts
                .iter()
                .any(|u| u.destination() == Path::new(&m.target))
            {
                continue;
            }
            user_mounts.push(record_bind(&m, mode.unwrap_or(m.read_only), &mut staging)?);
        }
    }
    if host.init {
        // Installed by the shim before the spec is built.
        mounts.push(bind(
            &super::init::path(paths),
            super::init::CONTAINER_PATH,
            true,
        )?);
    }
    // Parents before children, whatever order the user wrote them in.
    user_mounts.sort_by_key(|m| m.destination().components().count());
    mounts.extend(user_mounts);
    spec.set_mounts(Some(mounts));

    let mut namespaces = Vec::new();
    for (typ, shared_with_host, join) in [
        (LinuxNamespaceType::Pid, host.pid_host, &host.pid_join),
        (LinuxNamespaceType::Ipc, host.ipc_host, &host.ipc_join),
        (LinuxNamespaceType::Uts, false, &None),
        (LinuxNamespaceType::Mount, false, &None),
        (LinuxNamespaceType::Cgroup, false, &None),
    ] {
        if shared_with_host {
            continue;
        }
        let mut ns = LinuxNamespaceBuilder::default().typ(typ).build()?;
        if let Some(mode) = join {
            ns.set_path(Some(donor_namespace(rec, paths, mode, typ)?));
        }
        namespaces.push(ns);
    }
    namespaces.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path(paths.netns(&rec.id))
            .build()?,
    );

    let mut nodes = Vec::new();
    for d in &host.devices {
        nodes.extend(device_nodes(d)?);
    }
    if host.privileged {
        nodes.extend(host_devices(Path::new("/dev")));
    }
    let devices: Vec<LinuxDevice> = nodes
        .iter()
        .map(|(d, n)| {
            LinuxDeviceBuilder::default()
                .path(&d.container)
                .typ(n.typ)
                .major(n.major)
                .minor(n.minor)
                .file_mode(n.mode & 0o7777)
                .uid(n.uid)
                .gid(n.gid)
                .build()
        })
        .collect::<Result<_, _>>()?;

    // Only a container on berth's networks surely has a network namespace of its own (a build
    // step may share the host's, where net.* sysctls must not be written).
    let mut sysctl: HashMap<String, String> = DEFAULT_SYSCTLS
        .iter()
        .filter(|_| !rec.networks.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    sysctl.extend(host.sysctls.clone());

    let (masked, readonly) = if host.privileged || host.systempaths_unconfined {
        (Vec::new(), Vec::new())
    } else {
        (
            masked_paths(Path::new("/sys/devices/system/cpu")),
            READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
        )
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .devices(devices)
        .sysctl(sysctl)
        .resources(resources::build(host, &nodes)?)
        .cgroups_path(super::cgroups::container_path(paths, &rec.id))
        .build()?;
    linux.set_seccomp(seccomp(host, &caps)?);
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// `/proc/PID/ns/KIND` of the running container that `mode` names (`pid: service:db`).
fn donor_namespace(
    rec: &ContainerRecord,
    paths: &Paths,
    mode: &str,
    typ: LinuxNamespaceType,
) -> Result<PathBuf, SpecError> {
    let kind = if typ == LinuxNamespaceType::Pid {
        "pid"
    } else {
        "ipc"
    };
    let (_, pid) = super::container::namespace_donor(paths, rec, mode)
        .map_err(|reason| SpecError::Join { kind, reason })?;
    Ok(PathBuf::from(format!("/proc/{pid}/ns/{kind}")))
}

/// The container's capability set: Docker's defaults, `cap_add`, `cap_drop` (either may say
/// `ALL`), or everything when privileged. "Everything" is every capability in `held`, the
/// bounding set berth runs with (bit N = capability N): a process cannot grant more, and
/// berth may itself run confined (a container, a systemd unit with `CapabilityBoundingSet`).
pub fn capabilities(host: &HostConfig, held: u64) -> Result<Vec<Capability>, SpecError> {
    let all = || {
        ALL_CAPS
            .iter()
            .enumerate()
            .filter(|(bit, _)| held & (1u64 << bit) != 0)
            .map(|(_, c)| parse_cap(c))
            .collect::<Result<Vec<_>, _>>()
    };
    if host.privileged {
        return all();
    }
    let is_all = |v: &[String]| v.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let mut caps: Vec<Capability> = if is_all(&host.cap_add) {
        all()?
    } else if is_all(&host.cap_drop) {
        Vec::new()
    } else {
        DEFAULT_CAPS.to_vec()
    };
    if !is_all(&host.cap_add) {
        for name in &host.cap_add {
            let c = parse_cap(name)?;
            let bit = ALL_CAPS
                .iter()
                .position(|n| cap_name(c) == format!("CAP_{n}"));
            if bit.is_some_and(|b| held & (1u64 << b) == 0) {
                return Err(SpecError::NotHeld(cap_name(c)));
            }
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    if !is_all(&host.cap_drop) {
        let drop = host
            .cap_drop
            .iter()
            .map(|c| parse_cap(c))
            .collect::<Result<Vec<_>, _>>()?;
        // An explicit add wins over a drop of ALL only; a named drop always removes.
        caps.retain(|c| !drop.contains(c));
    }
    Ok(caps)
}

/// The bounding set of this process, from `/proc/self/status` (all bits if unreadable).
pub fn held_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// `CAP_SYS_ADMIN`, `sys_admin` or `SYS_ADMIN`.
pub fn parse_cap(name: &str) -> Result<Capability, SpecError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| SpecError::Capability(name.to_string()))
}

/// `CAP_SYS_ADMIN`, the spelling of the seccomp profile and `/proc`.
pub fn cap_name(c: Capability) -> String {
    match serde_json::to_value(c) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("CAP_{c}"),
    }
}

fn seccomp(host: &HostConfig, caps: &[Capability]) -> Result<Option<LinuxSeccomp>, SpecError> {
    if host.privileged {
        return Ok(None);
    }
    match &host.seccomp {
        Seccomp::Unconfined => Ok(None),
        Seccomp::Profile(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(SpecError::SeccompProfile),
        Seccomp::Default => {
            let names: HashSet<String> = caps.iter().map(|c| cap_name(*c)).collect();
            Ok(Some(super::seccomp::default_profile(
                &super::seccomp::Target {
                    caps: &names,
                    arch: std::env::consts::ARCH,
                    kernel: super::seccomp::running_kernel(),
                },
            )))
        }
    }
}

/// The bind of a mount of a container record: its `subpath` resolved now (it must exist, and
/// be reached without a symlink) and staged by descriptor under `staging` (the next free
/// number), its propagation in place of the default `rprivate`.
fn record_bind(
    m: &super::container::Mount,
    read_only: bool,
    staging: &mut (PathBuf, usize),
) -> Result<Mount, SpecError> {
    let source = match &m.subpath {
        Some(sub) => {
            staging.1 += 1;
            let at = staging.0.join(staging.1.to_string());
            super::volume::stage_subpath(&m.source, sub, &at).map_err(|reason| {
                SpecError::Subpath {
                    target: m.target.clone(),
                    reason,
                }
            })?
        }
        None => m.source.clone(),
    };
    let mut b = bind(&source, &m.target, read_only)?;
    if let Some(p) = &m.propagation {
        let mut options: Vec<String> = b.options().clone().unwrap_or_default();
        options.retain(|o| o != "rprivate");
        options.push(p.clone());
        b.set_options(Some(options));
    }
    Ok(b)
}

/// Where the host-side `/dev/shm` of a container lives (see [`HostConfig::ipc_shareable`]).
pub fn shm_dir(paths: &Paths, id: &str) -> PathBuf {
    paths.container(id).join("shm")
}

/// The host-side `/dev/shm` to bind into the container: its own when shareable, else that of
/// the shareable container whose ipc namespace it joins (mounted while that one runs).
fn shared_shm(rec: &ContainerRecord, paths: &Paths) -> Option<PathBuf> {
    if rec.host.ipc_host {
        return None;
    }
    if rec.host.ipc_shareable {
        return Some(shm_dir(paths, &rec.id));
    }
    let (donor, _) =
        super::container::namespace_donor(paths, rec, rec.host.ipc_join.as_deref()?).ok()?;
    let dir = shm_dir(paths, &donor.id);
    (donor.host.ipc_shareable && super::rootfs::is_mountpoint(&dir)).then_some(dir)
}

/// Docker's mounts, in Docker's order (security.md §1.3); `shm` is a host directory to bind
/// at `/dev/shm` in place of a tmpfs of the container's own.
fn default_mounts(host: &HostConfig, shm: Option<&Path>) -> Result<Vec<Mount>, SpecError> {
    let sys_mode = if host.privileged { "rw" } else { "ro" };
    let shm_size = host.shm_size.unwrap_or(DEFAULT_SHM_SIZE);
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
    ];
    if host.ipc_host {
        mounts.push(bind(Path::new("/dev/shm"), "/dev/shm", false)?);
    } else if let Some(shm) = shm {
        mounts.push(bind(shm, "/dev/shm", false)?);
    } else {
        mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &[
                "nosuid",
                "noexec",
                "nodev",
                "mode=1777",
                &format!("size={shm_size}"),
            ],
        )?);
    }
    Ok(mounts)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn tmpfs(t: &Tmpfs) -> Result<Mount, SpecError> {
    let mut options: Vec<String> = Vec::new();
    // Docker's tmpfs defaults; an explicit `exec`, `suid` or `dev` turns one off.
    for (default, opposite) in [("noexec", "exec"), ("nosuid", "suid"), ("nodev", "dev")] {
        if !t.options.iter().any(|o| o == opposite || o == default) {
            options.push(default.into());
        }
    }
    options.extend(t.options.iter().cloned());
    if let Some(s) = t.size {
        options.push(format!("size={s}"));
    }
    if let Some(m) = t.mode {
        options.push(format!("mode={m:o}"));
    }
    Ok(MountBuilder::default()
        .destination(&t.target)
        .typ("tmpfs")
        .source("tmpfs")
        .options(options)
        .build()?)
}

fn bind(source: &Path, target: &str, read_only: bool) -> Result<Mount, SpecError> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if read_only {
        options.push("ro".into());
    }
    Ok(MountBuilder::default()
        .destination(target)
        .typ("bind")
        .source(source)
        .options(options)
        .build()?)
}

/// [`MASKED_PATHS`] plus every `cpu<N>/thermal_throttle` under `cpu_dir` (GHSA-6fw5-f8r9-fgfm).
pub fn masked_paths(cpu_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = MASKED_PATHS.iter().map(|s| s.to_string()).collect();
    let mut thermal: Vec<String> = std::fs::read_dir(cpu_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.strip_prefix("cpu")
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
                && e.path().join("thermal_throttle").exists()
        })
        .map(|e| {
            format!(
                "/sys/devices/system/cpu/{}/thermal_throttle",
                e.file_name().to_string_lossy()
            )
        })
        .collect();
    thermal.sort();
    out.extend(thermal);
    out
}

/// The rlimits the user set, never above the hard limit berth itself runs with (raising one
/// would fail in the container's init, as it does for Docker users who ask too much).
fn rlimits(host: &HostConfig) -> Result<Option<Vec<PosixRlimit>>, SpecError> {
    if host.ulimits.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for u in &host.ulimits {
        let Some((typ, res)) = rlimit_type(&u.name) else {
            continue;
        };
        let (_, cur_hard) = nix::sys::resource::getrlimit(res).unwrap_or((u64::MAX, u64::MAX));
        let hard = u.hard.min(cur_hard);
        let soft = u.soft.min(hard);
        out.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()?,
        );
    }
    Ok(Some(out))
}

/// The compose name of an rlimit (`nofile`), if it is one.
pub fn rlimit_type(name: &str) -> Option<(PosixRlimitType, nix::sys::resource::Resource)> {
    use PosixRlimitType as T;
    use nix::sys::resource::Resource as R;
    Some(match name {
        "core" => (T::RlimitCore, R::RLIMIT_CORE),
        "cpu" => (T::RlimitCpu, R::RLIMIT_CPU),
        "data" => (T::RlimitData, R::RLIMIT_DATA),
        "fsize" => (T::RlimitFsize, R::RLIMIT_FSIZE),
        "locks" => (T::RlimitLocks, R::RLIMIT_LOCKS),
        "memlock" => (T::RlimitMemlock, R::RLIMIT_MEMLOCK),
        "msgqueue" => (T::RlimitMsgqueue, R::RLIMIT_MSGQUEUE),
        "nice" => (T::RlimitNice, R::RLIMIT_NICE),
        "nofile" => (T::RlimitNofile, R::RLIMIT_NOFILE),
        "nproc" => (T::RlimitNproc, R::RLIMIT_NPROC),
        "rss" => (T::RlimitRss, R::RLIMIT_RSS),
        "rtprio" => (T::RlimitRtprio, R::RLIMIT_RTPRIO),
        "rttime" => (T::RlimitRttime, R::RLIMIT_RTTIME),
        "sigpending" => (T::RlimitSigpending, R::RLIMIT_SIGPENDING),
        "stack" => (T::RlimitStack, R::RLIMIT_STACK),
        "as" => (T::RlimitAs, R::RLIMIT_AS),
        _ => return None,
    })
}

/// The device nodes a `devices:` entry names: one node, or every node under a directory.
fn device_nodes(d: &Device) -> Result<Vec<(Device, DeviceNode)>, SpecError> {
    let meta = std::fs::metadata(&d.host).map_err(|source| SpecError::Device {
        path: d.host.clone(),
        source,
    })?;
    if meta.is_dir() {
        let mut out = Vec::new();
        for (node_dev, node) in host_devices(&d.host) {
            let rel = node_dev
                .host
                .strip_prefix(&d.host)
                .unwrap_or(&node_dev.host)
                .to_path_buf();
            out.push((
                Device {
                    container: Path::new(&d.container).join(rel).display().to_string(),
                    permissions: d.permissions.clone(),
                    ..node_dev
                },
                node,
            ));
        }
        return Ok(out);
    }
    let node = node_of(&meta).ok_or_else(|| SpecError::NotADevice {
        path: d.host.clone(),
    })?;
    Ok(vec![(d.clone(), node)])
}

fn node_of(meta: &std::fs::Metadata) -> Option<DeviceNode> {
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(DeviceNode {
        typ,
        major: nix::sys::stat::major(rdev) as i64,
        minor: nix::sys::stat::minor(rdev) as i64,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// Every device node under `dir`, at the same path in the container (for `privileged`).
/// Nodes berth mounts itself (pts, shm, mqueue) and the console are skipped, as Docker does.
fn host_devices(dir: &Path) -> Vec<(Device, DeviceNode)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if ["/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console"]
                .iter()
                .any(|p| path == Path::new(p))
            {
                continue;
            }
            // symlink_metadata: never follow a link out of the directory.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if let Some(node) = node_of(&meta) {
                out.push((
                    Device {
                        host: path.clone(),
                        container: path.display().to_string(),
                        permissions: "rwm".into(),
                    },
                    node,
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.host.cmp(&b.0.host));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::hostconfig::Ulimit;

    fn caps_of(h: &HostConfig) -> Vec<String> {
        let mut v: Vec<String> = capabilities(h, u64::MAX)
            .unwrap()
            .into_iter()
            .map(cap_name)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn docker_default_caps_make_dockers_mask() {
        let mask: u64 = capabilities(&HostConfig::default(), u64::MAX)
            .unwrap()
            .into_iter()
            .map(|c| 1u64 << cap_number(&cap_name(c)))
            .sum();
        assert_eq!(format!("{mask:016x}"), "00000000a80425fb");
    }

    fn cap_number(name: &str) -> u32 {
        ALL_CAPS
            .iter()
            .position(|c| format!("CAP_{c}") == name)
            .unwrap() as u32
    }

    #[test]
    fn cap_add_and_drop() {
        let h = HostConfig {
            cap_add: vec!["SYS_ADMIN".into()],
            cap_drop: vec!["CAP_NET_RAW".into(), "chown".into()],
            ..Default::default()
        };
        let caps = caps_of(&h);
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(caps.len(), 13);
        let only = HostConfig {
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["NET_BIND_SERVICE".into()],
            ..Default::default()
        };
        assert_eq!(caps_of(&only), vec!["CAP_NET_BIND_SERVICE".to_string()]);
        let everything = HostConfig {
            cap_add: vec!["ALL".into()],
            cap_drop: vec!["MKNOD".into()],
            ..Default::default()
        };
        assert_eq!(caps_of(&everything).len(), 40);
        let privileged = HostConfig {
            privileged: true,
            ..Default::default()
        };
        assert_eq!(caps_of(&privileged).len(), 41);
        // Without CAP_SYS_RESOURCE (bit 24) in berth's own bounding set.
        let held: u64 = !(1 << 24);
        assert_eq!(capabilities(&privileged, held).unwrap().len(), 40);
        let want_it = HostConfig {
            cap_add: vec!["SYS_RESOURCE".into()],
            ..Default::default()
        };
        assert!(matches!(
            capabilities(&want_it, held),
            Err(SpecError::NotHeld(_))
        ));
        assert!(
            capabilities(
                &HostConfig {
                    cap_add: vec!["NOT_A_CAP".into()],
                    ..Default::default()
                },
                u64::MAX
            )
            .is_err()
        );
    }

    #[test]
    fn thermal_throttle_is_masked_per_cpu() {
        let d = tempfile::tempdir().unwrap();
        for cpu in ["cpu0", "cpu1", "cpufreq"] {
            std::fs::create_dir_all(d.path().join(cpu).join("thermal_throttle")).unwrap();
        }
        std::fs::create_dir_all(d.path().join("cpu2")).unwrap();
        let m = masked_paths(d.path());
        assert_eq!(m.len(), 14);
        assert_eq!(m[12], "/sys/devices/system/cpu/cpu0/thermal_throttle");
        assert_eq!(m[13], "/sys/devices/system/cpu/cpu1/thermal_throttle");
        assert!(m.contains(&"/proc/interrupts".to_string()));
    }

    #[test]
    fn ulimits_never_exceed_the_current_hard_limit() {
        let (_, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let h = HostConfig {
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: u64::MAX - 1,
                hard: u64::MAX - 1,
            }],
            ..Default::default()
        };
        let r = rlimits(&h).unwrap().unwrap();
        assert_eq!((r[0].soft(), r[0].hard()), (hard, hard));
    }

    #[test]
    fn tmpfs_gets_dockers_defaults_unless_overridden() {
        let t = Tmpfs {
            target: "/run".into(),
            options: vec!["exec".into(), "uid=1000".into()],
            size: Some(1 << 20),
            mode: Some(0o1777),
        };
        let m = tmpfs(&t).unwrap();
        assert_eq!(
            m.options().as_ref().unwrap(),
            &[
                "nosuid",
                "nodev",
                "exec",
                "uid=1000",
                "size=1048576",
                "mode=1777"
            ]
        );
    }
}
