//! `down`: stop and remove the project's containers and networks (and volumes with `-v`).
//! Every step tolerates what an interrupted `up` or `down` left half done.
use super::{Progress, containers, net_host, network};
use crate::engine::container::{ContainerRecord, labels, load_state};
use crate::engine::{runtime, volume};
use crate::net::NetHost;
use crate::state::Paths;
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::time::Duration;

pub struct DownOptions {
    pub volumes: bool,
    /// `-t`; `None` uses each container's own grace period.
    pub timeout: Option<Duration>,
    /// `--rmi`: image references to remove once the containers are gone.
    pub images: Vec<String>,
    /// `--remove-orphans`: also the containers of services the compose file no longer has,
    /// and one-off (`run`) containers.
    pub remove_orphans: bool,
    /// The compose file's services (enabled, and disabled by profiles), when `down` read one;
    /// `None` (`down -p NAME`): every service the containers name is the project's.
    pub services: Option<ProjectServices>,
    /// `down SERVICE...`: these services and those depending on them (see [`with_dependents`]);
    /// empty means all.
    pub only: std::collections::BTreeSet<String>,
}

/// The named services and every service that depends on one of them, directly or not
/// (`deps`: each service's `depends_on`), as `down SERVICE` takes them down.
pub fn with_dependents(
    deps: &std::collections::BTreeMap<String, Vec<String>>,
    names: &[String],
) -> std::collections::BTreeSet<String> {
    let mut out: std::collections::BTreeSet<String> = names.iter().cloned().collect();
    loop {
        let more: Vec<String> = deps
            .iter()
            .filter(|(s, d)| !out.contains(*s) && d.iter().any(|d| out.contains(d)))
            .map(|(s, _)| s.clone())
            .collect();
        if more.is_empty() {
            return out;
        }
        out.extend(more);
    }
}

/// The services of the compose file `down` read.
#[derive(Debug, Clone, Default)]
pub struct ProjectServices {
    /// Active services: their containers are removed.
    pub enabled: std::collections::BTreeSet<String>,
    /// Services whose profile is not active: their containers stay and are not orphans.
    pub disabled: std::collections::BTreeSet<String>,
}

impl DownOptions {
    /// Whether `down` removes this container of the project, as docker compose decides:
    /// one-off containers and orphans only with `--remove-orphans`; containers of a service
    /// disabled by its profile never.
    /// With `down SERVICE...`, only those services' (and their dependents') containers,
    /// plus, with `--remove-orphans`, every orphan and exited one-off.
    pub fn removes(&self, rec: &ContainerRecord, exited: bool) -> bool {
        let service = rec.service().unwrap_or_default();
        let chosen = self.only.is_empty() || self.only.contains(service);
        if super::up::is_oneoff(rec) {
            return self.remove_orphans && (chosen || exited);
        }
        let Some(services) = &self.services else {
            return chosen;
        };
        if services.enabled.contains(service) {
            chosen
        } else if services.disabled.contains(service) {
            false
        } else {
            self.remove_orphans
        }
    }
}

/// The images `down --rmi` removes: every service's (`all`), or only those without a custom
/// tag (`local`: built services without `image:`, named `<project>-<service>`).
pub fn service_images(project: &crate::compose::Project, local: bool) -> Vec<String> {
    let mut out: Vec<String> = project
        .services
        .values()
        .filter(|s| !local || s.image.is_none())
        .map(|s| super::build::image_name(project, s))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `down --rmi` without a compose file: the images the project's containers were made from;
/// `local` keeps only the default names (`<project>-<service>`).
pub fn container_images(paths: &Paths, project: &str, local: bool) -> Result<Vec<String>> {
    let mut out: Vec<String> = containers(paths, project)?
        .into_iter()
        .filter(|c| {
            !local
                || c.service()
                    .is_some_and(|s| c.image == format!("{project}-{s}"))
        })
        .map(|c| c.image)
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

pub async fn down(
    paths: &Paths,
    project: &str,
    opts: &DownOptions,
    progress: &dyn Progress,
) -> Result<()> {
    let _lock = super::lock(paths, project)?;
    crate::engine::container::sweep_unrecorded(paths);
    let host = net_host(paths);
    let recs: Vec<ContainerRecord> = containers(paths, project)?
        .into_iter()
        .filter(|c| {
            let exited = c
                .state(paths)
                .is_ok_and(|s| s.status == crate::engine::container::Status::Exited);
            opts.removes(c, exited)
        })
        .collect();

    // What the removed containers leave: the networks (and with them, when they are all of
    // the state root's, the whole nft table) that no container outside this removal uses.
    // What other containers (orphans, one-offs, other projects' or `berth run`'s joined with
    // `network connect`) still use stays, with docker compose's warning.
    let removing: HashSet<&str> = recs.iter().map(|r| r.id.as_str()).collect();
    let staying: Vec<ContainerRecord> = crate::engine::container::list(paths)?
        .into_iter()
        .filter(|c| !removing.contains(c.id.as_str()))
        .collect();
    const IN_USE: &str = "Resource is still in use";
    let all_networks = network::list(paths)?;
    let mut found = !recs.is_empty();
    let mut doomed = Vec::new();
    for n in &all_networks {
        if n.labels.get(labels::PROJECT).map(String::as_str) == Some(project) {
            found = true;
            let name = &n.network.name;
            if staying
                .iter()
                .any(|c| c.networks.iter().any(|a| &a.network == name))
            {
                progress.event("Network", name, IN_USE);
            } else {
                doomed.push(n.network.clone());
            }
        }
    }
    let skip = Leaving {
        networks: doomed.iter().map(|n| n.name.clone()).collect(),
        table: !all_networks.is_empty() && doomed.len() == all_networks.len(),
        await_links: true,
    };

    // Every container at once, each stopped by its own thread (it may take its whole grace
    // period). Then, all stopped, each removed by its own thread, and the networks by one more
    // at the same time: deleting a bridge waits for the kernel as long as the rest together.
    let stopped: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = recs
            .iter()
            .map(|rec| {
                progress.event("Container", &rec.name, "Stopping");
                s.spawn(move || -> Result<()> {
                    runtime::stop(paths, rec, runtime::grace(rec, opts.timeout))?;
                    Ok(())
                })
            })
            .collect();
        joined(handles)
    });
    stopped.into_iter().collect::<Result<()>>()?;
    let (removed, networks) = std::thread::scope(|s| {
        let net = s.spawn(|| -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            for n in &doomed {
                rt.block_on(network::remove(paths, &host, n))?;
            }
            Ok(())
        });
        let handles: Vec<_> = recs
            .iter()
            .map(|rec| {
                let (host, skip) = (&host, &skip);
                s.spawn(move || -> Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(remove_leaving(paths, host, rec, opts.timeout, skip))?;
                    progress.event("Container", &rec.name, "Removed");
                    Ok(())
                })
            })
            .collect();
        (joined(handles), joined(vec![net]))
    });
    removed
        .into_iter()
        .chain(networks)
        .collect::<Result<()>>()?;
    for n in &doomed {
        progress.event("Network", &n.name, "Removed");
    }
    if opts.volumes {
        // As `volume rm`: after any `up`/`run` about to mount a volume has saved its
        // containers (another project's may use ours), which are then found below.
        let _removing = volume::lock_for_removal(paths)?;
        let others = crate::engine::container::list(paths)?;
        for v in volume::list(paths)? {
            if v.labels.get(labels::PROJECT).map(String::as_str) == Some(project) {
                found = true;
                if others
                    .iter()
                    .any(|c| c.mounts.iter().any(|m| m.volume.as_ref() == Some(&v.name)))
                {
                    progress.event("Volume", &v.name, IN_USE);
                    continue;
                }
                volume::remove(paths, &v.name)?;
                progress.event("Volume", &v.name, "Removed");
            }
        }
    }

    if !opts.images.is_empty() {
        let store = crate::engine::image::ImageStore::open(&paths.images())?;
        for image in &opts.images {
            // An image that is already gone, or that another project's container uses, stays
            // a warning: the project itself is down.
            match store.remove(image, false, &paths.containers()) {
                Ok(_) => progress.event("Image", image, "Removed"),
                Err(crate::engine::image::ImageError::NotFound { .. }) => {}
                Err(e) => tracing::warn!("image {image}: {e}"),
            }
        }
        store.gc(&paths.containers())?;
    }
    if !found && opts.images.is_empty() {
        tracing::warn!("Warning: No resource found to remove for project {project:?}.");
    }
    remove_cgroup_parents(paths);
    Ok(())
}

/// Waits for the kernel to finish deleting a veth whose namespace was unmounted (about 10 ms,
/// mostly spent while the rest of the removal ran), so that nothing is left when the command
/// returns. A namespace something else still holds would keep it: after 2 s it is deleted.
async fn veth_gone(host: &NetHost, ifname: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while nix::net::if_::if_nametoindex(ifname).is_ok() {
        if std::time::Instant::now() > deadline {
            host.detach(ifname).await?;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// The results of scoped threads, a panic as an error.
fn joined(handles: Vec<std::thread::ScopedJoinHandle<'_, Result<()>>>) -> Vec<Result<()>> {
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a removal thread panicked")))
        })
        .collect()
}

/// What goes away together with the containers `down` removes, so that removing each of them
/// need not undo its part in it: the networks being removed (their address books go whole)
/// and, when those are all of the state root's, the nft table (with every published port).
#[derive(Default)]
pub struct Leaving {
    pub networks: HashSet<String>,
    pub table: bool,
    /// Wait until the kernel has deleted the container's veths (see [`veth_gone`]). `down`
    /// does, since it promises nothing left; removing one container (`rm`, `run --rm`, a
    /// recreate) does not: its veth names are never used again, and they go about 10 ms later.
    pub await_links: bool,
}

/// Stops and removes one container with everything that belongs to it. Idempotent.
pub async fn remove_container(
    paths: &Paths,
    host: &NetHost,
    rec: &ContainerRecord,
    timeout: Option<Duration>,
) -> Result<()> {
    remove_leaving(paths, host, rec, timeout, &Leaving::default()).await
}

/// [`remove_container`], leaving alone what `leaving` says goes by itself.
pub async fn remove_leaving(
    paths: &Paths,
    host: &NetHost,
    rec: &ContainerRecord,
    timeout: Option<Duration>,
    leaving: &Leaving,
) -> Result<()> {
    crate::sys::timing::mark("removal begins");
    runtime::stop(paths, rec, runtime::grace(rec, timeout))?;
    crate::sys::timing::mark("removal stopped");
    let state = load_state(paths, &rec.id)?;
    let maps = super::up::port_mappings(rec, &state.ports);
    if !maps.is_empty() && !leaving.table {
        host.unpublish(&maps)
            .with_context(|| format!("unpublishing the ports of {}", rec.name))?;
    }
    // Unmounting the container's namespace deletes its veths with it: the kernel tears a
    // namespace nobody holds down in the background, all its devices in one batch. Deleting
    // each veth here instead waits for a network-wide RCU grace period (about 20 ms, one
    // after the other under the RTNL lock). Host ends are deleted one by one only when the
    // namespace is gone already (a removal interrupted after the unmount).
    let netns = paths.netns(&rec.id);
    let by_namespace = crate::net::netns::is_netns_mount(&netns);
    for att in &rec.networks {
        if !by_namespace {
            host.detach(&att.host_ifname).await?;
        }
        if leaving.networks.contains(&att.network) {
            continue;
        }
        if let Some(n) = network::load(paths, &att.network)? {
            network::allocator(paths, &n.network).release(&rec.id)?;
        }
    }
    crate::sys::timing::mark("removal addresses released");
    crate::net::remove_netns(&netns)?;
    crate::sys::timing::mark("removal netns unmounted");
    runtime::remove(paths, rec)?;
    if by_namespace && leaving.await_links {
        for att in &rec.networks {
            veth_gone(host, &att.host_ifname).await?;
        }
    }
    Ok(())
}

/// Removes this root's empty cgroup parent directories (rmdir only: never anything inside).
fn remove_cgroup_parents(paths: &Paths) {
    let parent = paths.cgroup_parent();
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path().join(&parent);
        if dir.is_dir() {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    let _ = std::fs::remove_dir(std::path::Path::new("/sys/fs/cgroup").join(&parent));
}
