//! Turns a container record into an OCI runtime spec (`bundle/config.json`) for libcontainer.
use super::container::ContainerRecord;
use crate::state::Paths;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};
use std::collections::HashSet;
use std::path::Path;

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

/// Builds the spec. `rootfs` is the mounted overlay; `dir` the container's state directory,
/// which holds the `hosts`, `hostname` and `resolv.conf` files bind-mounted into `/etc`.
pub fn build(
    rec: &ContainerRecord,
    paths: &Paths,
    rootfs: &Path,
    dir: &Path,
) -> Result<Spec, oci_spec::OciSpecError> {
    let mut spec = Spec::default();
    let caps: HashSet<Capability> = DEFAULT_CAPS.into_iter().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let p = &rec.process;
    let user = UserBuilder::default()
        .uid(p.uid)
        .gid(p.gid)
        .additional_gids(p.additional_gids.clone())
        .build()?;
    let mut process = ProcessBuilder::default()
        .args(p.args.clone())
        .env(p.env.clone())
        .cwd(p.cwd.clone())
        .user(user)
        .capabilities(capabilities)
        .no_new_privileges(false)
        .terminal(false)
        .build()?;
    // Keep the kernel's limits rather than a fixed 1024 files: never above the current hard limit.
    process.set_rlimits(None);
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(false)
            .build()?,
    ));
    spec.set_hostname(Some(rec.hostname.clone()));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (file, target) in [
        ("hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        mounts.push(bind(&dir.join(file), target, false)?);
    }
    for m in &rec.mounts {
        mounts.push(bind(&m.source, &m.target, m.read_only)?);
    }
    spec.set_mounts(Some(mounts));

    let mut namespaces = Vec::new();
    for typ in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ] {
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
    }
    namespaces.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path(paths.netns(&rec.id))
            .build()?,
    );
    let default_linux = spec.linux().clone().unwrap_or_default();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(default_linux.masked_paths().clone().unwrap_or_default())
        .readonly_paths(default_linux.readonly_paths().clone().unwrap_or_default())
        .cgroups_path(format!("/{}/{}", paths.cgroup_parent(), rec.id))
        .build()?;
    spec.set_linux(Some(linux));
    Ok(spec)
}

fn bind(
    source: &Path,
    target: &str,
    read_only: bool,
) -> Result<oci_spec::runtime::Mount, oci_spec::OciSpecError> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if read_only {
        options.push("ro".into());
    }
    MountBuilder::default()
        .destination(target)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
}
