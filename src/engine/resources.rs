//! Cgroup limits and the device allowlist of a container, as the OCI `linux.resources` object.
//!
//! The one decision to know: berth only maps its record to OCI resources; libcgroups (inside
//! libcontainer) writes the cgroup files for v1 or v2. The v2 mapping is tested here by
//! applying the resources with libcgroups' v2 manager to a fixture directory, since this host
//! runs cgroup v1.
use super::hostconfig::{Device, HostConfig};
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

/// Docker's device cgroup: deny everything, then allow the default device nodes (libcgroups
/// adds pts, ptmx, tun and mknod for every container), and deny fuse explicitly.
/// `moby daemon/pkg/oci/defaults.go`; security.md §1.5.
fn default_device_rules() -> Result<Vec<LinuxDeviceCgroup>, OciSpecError> {
    let mut rules = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?,
    ];
    for (major, minor) in [(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)] {
        rules.push(rule(
            true,
            LinuxDeviceType::C,
            Some(major),
            Some(minor),
            "rwm",
        )?);
    }
    rules.push(rule(false, LinuxDeviceType::C, Some(10), Some(229), "rwm")?);
    Ok(rules)
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup, OciSpecError> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build()
}

/// A host device node as the container gets it: its type and numbers, read from the host.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceNode {
    pub typ: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// `linux.resources` for the record: limits plus the device allowlist. `devices` are the
/// user's devices with their host nodes, already looked up.
pub fn build(
    host: &HostConfig,
    devices: &[(Device, DeviceNode)],
) -> Result<LinuxResources, OciSpecError> {
    let r = &host.resources;
    let mut rules = if host.privileged {
        vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .access("rwm")
                .build()?,
        ]
    } else {
        default_device_rules()?
    };
    for (d, node) in devices {
        rules.push(rule(
            true,
            node.typ,
            Some(node.major),
            Some(node.minor),
            &d.permissions,
        )?);
    }
    let mut b = LinuxResourcesBuilder::default().devices(rules);

    let mut mem = LinuxMemoryBuilder::default();
    let mut any_mem = false;
    if let Some(m) = r.memory {
        mem = mem.limit(m);
        any_mem = true;
        // Docker: without memswap_limit, swap may be as large as the memory limit.
        mem = mem.swap(r.memory_swap.unwrap_or(m.saturating_mul(2)));
    } else if let Some(s) = r.memory_swap {
        mem = mem.swap(s);
        any_mem = true;
    }
    if let Some(v) = r.memory_reservation {
        mem = mem.reservation(v);
        any_mem = true;
    }
    if let Some(v) = r.memory_swappiness {
        mem = mem.swappiness(v);
        any_mem = true;
    }
    if r.oom_kill_disable {
        mem = mem.disable_oom_killer(true);
        any_mem = true;
    }
    if any_mem {
        b = b.memory(mem.build()?);
    }

    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if let Some(v) = r.cpu_shares {
        cpu = cpu.shares(v);
        any_cpu = true;
    }
    if let Some(v) = r.cpu_quota {
        cpu = cpu.quota(v);
        any_cpu = true;
    }
    if let Some(v) = r.cpu_period {
        cpu = cpu.period(v);
        any_cpu = true;
    }
    if let Some(v) = &r.cpuset_cpus {
        cpu = cpu.cpus(v.clone());
        any_cpu = true;
    }
    if any_cpu {
        b = b.cpu(cpu.build()?);
    }
    if let Some(p) = r.pids_limit {
        b = b.pids(LinuxPidsBuilder::default().limit(p).build()?);
    }
    b.build()
}

/// `cpus: 1.5` as Docker does it: a 100 ms period and a quota of `cpus` periods.
pub fn cpus_to_quota(cpus: f64) -> (i64, u64) {
    const PERIOD: u64 = 100_000;
    ((cpus * PERIOD as f64).round() as i64, PERIOD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::hostconfig::Resources;
    use libcgroups::common::{CgroupManager, ControllerOpt};
    use std::fs;
    use std::path::Path;

    fn limits() -> HostConfig {
        let (quota, period) = cpus_to_quota(1.5);
        HostConfig {
            resources: Resources {
                memory: Some(64 << 20),
                memory_swap: Some(128 << 20),
                cpu_shares: Some(512),
                cpu_quota: Some(quota),
                cpu_period: Some(period),
                cpuset_cpus: Some("0".into()),
                pids_limit: Some(100),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn cpus_become_a_quota_per_100ms() {
        assert_eq!(cpus_to_quota(1.5), (150_000, 100_000));
        assert_eq!(cpus_to_quota(0.25), (25_000, 100_000));
    }

    #[test]
    fn memory_without_swap_gets_twice_the_limit() {
        let mut h = limits();
        h.resources.memory_swap = None;
        let r = build(&h, &[]).unwrap();
        let m = r.memory().as_ref().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(64 << 20), Some(128 << 20)));
    }

    #[test]
    fn device_rules_deny_by_default_and_privileged_allows_all() {
        let r = build(&HostConfig::default(), &[]).unwrap();
        let rules = r.devices().as_ref().unwrap();
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        assert!(!rules[0].allow());
        assert!(
            rules
                .iter()
                .any(|d| d.allow() && d.to_string() == "c 1:3 rwm")
        );
        assert!(
            rules
                .iter()
                .any(|d| !d.allow() && d.to_string() == "c 10:229 rwm")
        );
        let p = build(
            &HostConfig {
                privileged: true,
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        let rules = p.devices().as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow());
    }

    fn write(p: &Path, name: &str, content: &str) {
        fs::write(p.join(name), content).unwrap();
    }

    /// cgroup v2: applying the resources through libcgroups' v2 manager writes the unified
    /// files we expect. A fixture directory stands in for `/sys/fs/cgroup`.
    #[test]
    fn v2_mapping_against_a_fixture() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "cgroup.controllers",
            "cpuset cpu io memory pids\n",
        );
        write(root.path(), "cgroup.subtree_control", "");
        let cg = root.path().join("berth-test/c1");
        fs::create_dir_all(&cg).unwrap();
        for f in [
            "cgroup.procs",
            "cpu.max",
            "cpu.weight",
            "cpuset.cpus",
            "cpuset.mems",
            "memory.max",
            "memory.swap.max",
            "memory.low",
            "pids.max",
        ] {
            write(&cg, f, "");
        }
        let resources = build(&limits(), &[]).unwrap();
        let m = libcgroups::v2::manager::Manager::new(
            root.path().to_path_buf(),
            "berth-test/c1".into(),
        )
        .unwrap();
        m.apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .unwrap();
        let read = |f: &str| fs::read_to_string(cg.join(f)).unwrap().trim().to_string();
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        // v2 counts swap alone: memory+swap minus memory.
        assert_eq!(read("memory.swap.max"), (64u64 << 20).to_string());
        assert_eq!(read("cpu.max"), "150000 100000");
        // libcgroups converts shares to a weight with runc's current (non-linear) formula.
        assert_eq!(read("cpu.weight"), "59");
        assert_eq!(read("cpuset.cpus"), "0");
        assert_eq!(read("pids.max"), "100");
    }
}
