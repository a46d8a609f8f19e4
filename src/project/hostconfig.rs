//! From a compose service to the container's [`HostConfig`]: privileges, security options,
//! devices, tmpfs, sysctls, ulimits, resource limits, namespaces and stop settings.
//!
//! The one decision to know: every check that depends only on what the user wrote happens
//! here, before anything is created, and every problem of the service is reported at once.
use crate::compose::normalize::{parse_bytes, parse_duration};
use crate::compose::{Project, Service, VolumeType};
use crate::engine::hostconfig::{Device, HostConfig, Resources, Seccomp, Tmpfs, Ulimit};
use crate::engine::resources::cpus_to_quota;
use crate::engine::spec::{parse_cap, rlimit_type};
use std::path::Path;

/// Sysctls that a container may set because they are namespaced (Docker's `ValidateSysctl`).
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// What is wrong with a `service:NAME` / `container:NAME` namespace mode, if anything.
fn join_error(project: &Project, mode: &str) -> Option<String> {
    let (kind, name) = mode.split_once(':')?;
    if name.is_empty() {
        return Some(format!("{mode:?} names no {kind}"));
    }
    (kind == "service" && !project.services.contains_key(name))
        .then(|| format!("{mode:?} refers to undefined service {name:?}"))
}

/// The service's host configuration, or every problem found in it.
pub fn host_config(project: &Project, svc: &Service) -> Result<HostConfig, Vec<String>> {
    let mut errors = Vec::new();
    let mut h = HostConfig {
        privileged: svc.privileged,
        read_only: svc.read_only,
        domainname: svc.domainname.clone(),
        init: svc.init.unwrap_or(false),
        tty: svc.tty,
        stdin_open: svc.stdin_open,
        stop_signal: svc.stop_signal.clone(),
        group_add: svc.group_add.clone(),
        ..Default::default()
    };

    for (list, out) in [
        (&svc.cap_add, &mut h.cap_add),
        (&svc.cap_drop, &mut h.cap_drop),
    ] {
        for c in list {
            if c.eq_ignore_ascii_case("ALL") || parse_cap(c).is_ok() {
                out.push(c.clone());
            } else {
                errors.push(format!("unknown capability {c:?}"));
            }
        }
    }

    for opt in &svc.security_opt {
        let (key, value) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .unwrap_or((opt.as_str(), ""));
        match (key, value) {
            ("no-new-privileges", "" | "true") => h.no_new_privileges = true,
            ("no-new-privileges", "false") => h.no_new_privileges = false,
            ("seccomp", "unconfined") => h.seccomp = Seccomp::Unconfined,
            ("systempaths", "unconfined") => h.systempaths_unconfined = true,
            ("seccomp", file) if !file.is_empty() => {
                match seccomp_file(&project.working_dir.join(file)) {
                    Ok(v) => h.seccomp = Seccomp::Profile(v),
                    Err(e) => errors.push(e),
                }
            }
            // No LSM is loaded by berth: AppArmor and SELinux labels have nothing to apply to.
            ("apparmor" | "label", _) => {}
            _ => errors.push(format!("unsupported security_opt {opt:?}")),
        }
    }

    for t in &svc.tmpfs {
        match short_tmpfs(t) {
            Ok(t) => h.tmpfs.push(t),
            Err(e) => errors.push(e),
        }
    }
    for v in svc.volumes.iter().filter(|v| v.kind == VolumeType::Tmpfs) {
        let opts = v.tmpfs.clone().unwrap_or_default();
        let size = match opts.size.as_deref().map(|s| (s, parse_bytes(s))) {
            Some((s, None)) => {
                errors.push(format!("tmpfs {}: invalid size {s:?}", v.target));
                None
            }
            Some((_, n)) => n,
            None => None,
        };
        h.tmpfs.push(Tmpfs {
            target: v.target.clone(),
            options: if v.read_only {
                vec!["ro".into()]
            } else {
                vec![]
            },
            size,
            mode: opts.mode,
        });
    }

    if let Some(s) = &svc.shm_size {
        match parse_bytes(s) {
            Some(n) if n > 0 => h.shm_size = Some(n),
            _ => errors.push(format!("invalid shm_size {s:?}")),
        }
    }

    for d in &svc.devices {
        let permissions = d.permissions.clone().unwrap_or_else(|| "rwm".into());
        if permissions.is_empty() || !permissions.chars().all(|c| "rwm".contains(c)) {
            errors.push(format!(
                "device {}: invalid permissions {permissions:?} (use some of rwm)",
                d.source
            ));
        }
        if !Path::new(&d.source).exists() {
            errors.push(format!("device {}: no such file on the host", d.source));
        }
        let target = if d.target.is_empty() {
            d.source.clone()
        } else {
            d.target.clone()
        };
        h.devices.push(Device {
            host: d.source.clone().into(),
            container: target,
            permissions,
        });
    }

    // An ipc namespace that is not the container's own: its sysctls are someone else's.
    let ipc_shared = svc
        .ipc
        .as_deref()
        .is_some_and(|m| m == "host" || m.starts_with("service:") || m.starts_with("container:"));
    let net_host = svc.network_mode.as_deref() == Some("host");
    for (k, v) in &svc.sysctls {
        // The key becomes a path under /proc/sys and the value is written there: no `/`,
        // `..` or empty components in one, no second assignment smuggled in the other
        // (CVE-2022-0811).
        let key_ok = !k.is_empty()
            && k.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
            });
        if !key_ok {
            errors.push(format!("sysctl {k:?}: invalid name"));
            continue;
        }
        if v.contains(['=', '+', '\n', '\0']) {
            errors.push(format!("sysctl {k}: invalid value {v:?}"));
            continue;
        }
        let ipc = IPC_SYSCTLS.contains(&k.as_str()) || k.starts_with("fs.mqueue.");
        let net = k.starts_with("net.");
        if ipc && ipc_shared {
            errors.push(format!(
                "sysctl {k}: not allowed with ipc: {}",
                svc.ipc.as_deref().unwrap_or_default()
            ));
        } else if net && net_host {
            errors.push(format!("sysctl {k}: not allowed with network_mode: host"));
        } else if !ipc && !net {
            errors.push(format!(
                "sysctl {k} is not namespaced: a container cannot set it without changing the host"
            ));
        } else {
            h.sysctls.insert(k.clone(), v.clone());
        }
    }

    for (name, u) in &svc.ulimits {
        if rlimit_type(name).is_none() {
            errors.push(format!("unknown ulimit {name:?}"));
            continue;
        }
        let value = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
        let (soft, hard) = (value(u.soft), value(u.hard));
        if soft > hard {
            errors.push(format!(
                "ulimit {name}: soft limit {} is above the hard limit {}",
                u.soft, u.hard
            ));
        }
        h.ulimits.push(Ulimit {
            name: name.clone(),
            soft,
            hard,
        });
    }

    for (host, ips) in &svc.extra_hosts {
        for ip in ips {
            if ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
                errors.push(format!("extra_hosts {host}: invalid IP address {ip:?}"));
            }
            h.extra_hosts.push((host.clone(), ip.clone()));
        }
    }

    match svc.pid.as_deref() {
        None | Some("") => {}
        Some("host") => h.pid_host = true,
        Some(m) if m.starts_with("service:") || m.starts_with("container:") => {
            match join_error(project, m) {
                Some(e) => errors.push(format!("pid: {e}")),
                None => h.pid_join = Some(m.to_string()),
            }
        }
        Some(other) => errors.push(format!(
            "pid: {other:?} is not supported (host, service:NAME or container:NAME)"
        )),
    }
    // Every private ipc namespace can be joined; `shareable` (or being named by another
    // service's `ipc: service:`) also puts `/dev/shm` on the host, so joiners share it.
    let joined = format!("service:{}", svc.name);
    h.ipc_shareable = svc.ipc.as_deref() == Some("shareable")
        || project
            .services
            .values()
            .any(|s| s.ipc.as_deref() == Some(joined.as_str()));
    for from in &svc.volumes_from {
        let (name, mode) = match from.rsplit_once(':') {
            Some((n, m @ ("ro" | "rw"))) => (n, Some(m)),
            _ => (from.as_str(), None),
        };
        let (kind, name) = match name.strip_prefix("container:") {
            Some(c) => ("container", c),
            None => ("service", name),
        };
        if name.is_empty() || name.contains(':') {
            errors.push(format!(
                "volumes_from {from:?}: use SERVICE, container:NAME, with :ro or :rw"
            ));
        } else if kind == "service" && !project.services.contains_key(name) {
            errors.push(format!(
                "volumes_from {from:?} refers to undefined service {name:?}"
            ));
        } else {
            h.volumes_from.push(match mode {
                Some(m) => format!("{kind}:{name}:{m}"),
                None => format!("{kind}:{name}"),
            });
        }
    }
    match svc.ipc.as_deref() {
        None | Some("" | "private" | "shareable") => {}
        Some("host") => h.ipc_host = true,
        Some(m) if m.starts_with("service:") || m.starts_with("container:") => {
            match join_error(project, m) {
                Some(e) => errors.push(format!("ipc: {e}")),
                None => h.ipc_join = Some(m.to_string()),
            }
        }
        Some(other) => errors.push(format!(
            "ipc: {other:?} is not supported (host, private, shareable, service:NAME or container:NAME)"
        )),
    }

    if let Some(sig) = &svc.stop_signal
        && parse_signal(sig).is_none()
    {
        errors.push(format!("invalid stop_signal {sig:?}"));
    }
    if let Some(g) = &svc.stop_grace_period {
        match parse_duration(g) {
            Some(d) => h.stop_grace_period_ms = Some(d.as_millis() as u64),
            None => errors.push(format!("invalid stop_grace_period {g:?}")),
        }
    }
    if let Some(o) = svc.oom_score_adj {
        if (-1000..=1000).contains(&o) {
            h.oom_score_adj = Some(o as i32);
        } else {
            errors.push(format!("oom_score_adj {o} is outside -1000..1000"));
        }
    }

    h.resources = resources(svc, &mut errors);
    if errors.is_empty() {
        Ok(h)
    } else {
        Err(errors)
    }
}

pub use crate::engine::hostconfig::parse_signal;

/// Reads a `seccomp=<file>` profile: an OCI `linux.seccomp` object, as Docker accepts.
fn seccomp_file(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("seccomp profile {}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("seccomp profile {}: {e}", path.display()))?;
    serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(v.clone())
        .map_err(|e| format!("seccomp profile {}: {e}", path.display()))?;
    Ok(v)
}

/// `/run`, `/run:size=64m,mode=1777,uid=1000`.
fn short_tmpfs(s: &str) -> Result<Tmpfs, String> {
    let (target, opts) = s.split_once(':').unwrap_or((s, ""));
    if !target.starts_with('/') {
        return Err(format!("tmpfs {s:?}: the target must be an absolute path"));
    }
    let mut t = Tmpfs {
        target: target.to_string(),
        ..Default::default()
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        if let Some(v) = o.strip_prefix("size=") {
            t.size = Some(parse_bytes(v).ok_or_else(|| format!("tmpfs {s:?}: invalid size"))?);
        } else if let Some(v) = o.strip_prefix("mode=") {
            t.mode =
                Some(u32::from_str_radix(v, 8).map_err(|_| format!("tmpfs {s:?}: invalid mode"))?);
        } else {
            t.options.push(o.to_string());
        }
    }
    Ok(t)
}

fn bytes(what: &str, s: &Option<String>, errors: &mut Vec<String>) -> Option<i64> {
    let s = s.as_deref()?;
    if s.trim() == "-1" {
        return Some(-1);
    }
    match parse_bytes(s) {
        Some(n) => Some(n as i64),
        None => {
            errors.push(format!("invalid {what} {s:?}"));
            None
        }
    }
}

/// Cgroup limits: the service keys, or `deploy.resources` where the key is unset.
fn resources(svc: &Service, errors: &mut Vec<String>) -> Resources {
    let deploy = svc.deploy.as_ref().and_then(|d| d.resources.as_ref());
    let limits = deploy.and_then(|r| r.limits.clone()).unwrap_or_default();
    let reservations = deploy
        .and_then(|r| r.reservations.clone())
        .unwrap_or_default();
    let mut r = Resources {
        memory: bytes(
            "mem_limit",
            &svc.mem_limit.clone().or(limits.memory),
            errors,
        ),
        memory_swap: bytes("memswap_limit", &svc.memswap_limit, errors),
        memory_reservation: bytes(
            "mem_reservation",
            &svc.mem_reservation.clone().or(reservations.memory),
            errors,
        ),
        oom_kill_disable: svc.oom_kill_disable.unwrap_or(false),
        cpu_quota: svc.cpu_quota,
        cpu_period: svc.cpu_period.map(|p| p as u64),
        cpuset_cpus: svc.cpuset.clone(),
        pids_limit: svc.pids_limit.or(limits.pids),
        ..Default::default()
    };
    if let Some(s) = svc.mem_swappiness {
        if (0..=100).contains(&s) {
            r.memory_swappiness = Some(s as u64);
        } else {
            errors.push(format!("mem_swappiness {s} is outside 0..100"));
        }
    }
    if let Some(s) = svc.cpu_shares {
        if s >= 2 {
            r.cpu_shares = Some(s as u64);
        } else {
            errors.push(format!("cpu_shares {s} is below the minimum of 2"));
        }
    }
    if let (Some(m), Some(s)) = (r.memory, r.memory_swap)
        && s != -1
        && s < m
    {
        errors.push(format!(
            "memswap_limit {s} is below mem_limit {m}: it counts memory plus swap"
        ));
    }
    if r.memory_swap.is_some() && r.memory.is_none() {
        errors.push("memswap_limit needs mem_limit".into());
    }
    if let Some(cpus) = svc.cpus.or(limits.cpus) {
        if svc.cpu_quota.is_some() || svc.cpu_period.is_some() {
            errors.push("cpus cannot be combined with cpu_quota or cpu_period".into());
        } else if cpus <= 0.0 {
            errors.push(format!("cpus {cpus} must be above 0"));
        } else {
            let (quota, period) = cpus_to_quota(cpus);
            r.cpu_quota = Some(quota);
            r.cpu_period = Some(period);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> (Project, Service) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        let opts = crate::compose::LoadOptions {
            working_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let p = crate::compose::load(&opts).unwrap();
        let s = p.services.values().next().unwrap().clone();
        (p, s)
    }

    #[test]
    fn every_key_maps() {
        let (p, s) = service(
            r#"
services:
  a:
    image: busybox
    privileged: false
    read_only: true
    cap_add: [SYS_ADMIN]
    cap_drop: [NET_RAW]
    security_opt: ["no-new-privileges:true", "seccomp=unconfined"]
    tmpfs: ["/run:size=1m,mode=1777", /tmp]
    volumes:
      - type: tmpfs
        target: /cache
        tmpfs: {size: 2m}
    shm_size: 128m
    sysctls: {net.ipv4.ip_forward: "1", net.core.somaxconn: "1000"}
    ulimits: {nofile: {soft: 100, hard: 200}, nproc: 50}
    extra_hosts: ["gw:host-gateway", "db=10.0.0.9"]
    pid: host
    ipc: host
    oom_score_adj: 500
    init: true
    stop_signal: SIGUSR1
    stop_grace_period: 1m30s
    mem_limit: 64m
    memswap_limit: 128m
    cpus: 0.5
    cpu_shares: 512
    cpuset: "0"
    pids_limit: 50
"#,
        );
        let h = host_config(&p, &s).unwrap();
        assert!(h.read_only && h.no_new_privileges && h.pid_host && h.ipc_host && h.init);
        assert_eq!(h.seccomp, Seccomp::Unconfined);
        assert_eq!(h.cap_add, vec!["SYS_ADMIN"]);
        assert_eq!(h.tmpfs.len(), 3);
        assert_eq!(h.tmpfs[0].size, Some(1 << 20));
        assert_eq!(h.tmpfs[0].mode, Some(0o1777));
        assert_eq!(h.tmpfs[2].target, "/cache");
        assert_eq!(h.shm_size, Some(128 << 20));
        assert_eq!(h.sysctls.len(), 2);
        assert_eq!(h.ulimits.len(), 2);
        assert!(
            h.extra_hosts
                .contains(&("gw".into(), "host-gateway".into()))
        );
        assert_eq!(h.oom_score_adj, Some(500));
        assert_eq!(h.stop_grace_period_ms, Some(90_000));
        let r = &h.resources;
        assert_eq!(r.memory, Some(64 << 20));
        assert_eq!(r.memory_swap, Some(128 << 20));
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(50_000), Some(100_000)));
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.pids_limit, Some(50));
    }

    #[test]
    fn deploy_limits_apply_when_the_keys_are_unset() {
        let (p, s) = service(
            r#"
services:
  a:
    image: busybox
    deploy:
      resources:
        limits: {cpus: "1.5", memory: 32M, pids: 10}
        reservations: {memory: 16M}
"#,
        );
        let r = host_config(&p, &s).unwrap().resources;
        assert_eq!(r.memory, Some(32 << 20));
        assert_eq!(r.memory_reservation, Some(16 << 20));
        assert_eq!(r.cpu_quota, Some(150_000));
        assert_eq!(r.pids_limit, Some(10));
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let (p, s) = service(
            r#"
services:
  a:
    image: busybox
    cap_add: [NOT_A_CAP]
    security_opt: ["seccomp=missing.json", "bogus"]
    sysctls:
      kernel.panic: "1"
      net.ipv4/../../kernel.core_pattern: "|/x"
      kernel.shm_rmid_forced: "1+kernel.core_pattern=|/x"
    ulimits: {nofile: {soft: 300, hard: 200}, bogus: 1}
    extra_hosts: ["x:not-an-ip"]
    pid: "vm:other"
    ipc: "container:"
    stop_signal: SIGNOPE
    devices: ["/dev/does-not-exist:/dev/x"]
    cpus: 1
    cpu_quota: 1000
"#,
        );
        let errors = host_config(&p, &s).unwrap_err();
        for want in [
            "unknown capability",
            "missing.json",
            "unsupported security_opt \"bogus\"",
            "kernel.panic is not namespaced",
            "kernel.core_pattern\": invalid name",
            "kernel.shm_rmid_forced: invalid value",
            "soft limit 300",
            "unknown ulimit",
            "invalid IP address",
            "pid: \"vm:other\" is not supported",
            "ipc: \"container:\" names no container",
            "invalid stop_signal",
            "no such file on the host",
            "cpus cannot be combined",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "missing {want:?} in {errors:#?}"
            );
        }
    }

    #[test]
    fn signals_parse_in_every_spelling() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("SIGUSR1"), Some(Signal::SIGUSR1));
        assert_eq!(parse_signal("usr1"), Some(Signal::SIGUSR1));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("NOPE"), None);
    }
}
