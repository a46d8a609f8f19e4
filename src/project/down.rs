//! `down`: stop and remove the project's containers and networks (and volumes with `-v`).
//! Every step tolerates what an interrupted `up` or `down` left half done.
use super::{Progress, containers, net_host, network};
use crate::engine::container::{ContainerRecord, labels, load_state};
use crate::engine::{runtime, volume};
use crate::net::NetHost;
use crate::state::Paths;
use anyhow::{Context, Result};
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

    // Every container at once, each stopped (it may take its whole grace period) then removed
    // by its own thread: most of the cost is waiting for the kernel to tear down links.
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = recs
            .iter()
            .map(|rec| {
                let host = &host;
                progress.event("Container", &rec.name, "Stopping");
                s.spawn(move || -> Result<()> {
                    runtime::stop(paths, rec, runtime::grace(rec, opts.timeout))?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(remove_container(paths, host, rec, opts.timeout))?;
                    progress.event("Container", &rec.name, "Removed");
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a removal thread panicked")))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    let mut found = !recs.is_empty();

    // What the containers left (orphans, one-offs, other projects' or `berth run`'s joined
    // with `network connect`) still use stays, with docker compose's warning.
    let others = crate::engine::container::list(paths)?;
    const IN_USE: &str = "Resource is still in use";
    for n in network::list(paths)? {
        if n.labels.get(labels::PROJECT).map(String::as_str) == Some(project) {
            let name = &n.network.name;
            found = true;
            if others
                .iter()
                .any(|c| c.networks.iter().any(|a| &a.network == name))
            {
                progress.event("Network", name, IN_USE);
                continue;
            }
            network::remove(paths, &host, &n.network).await?;
            progress.event("Network", name, "Removed");
        }
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

/// Stops and removes one container with everything that belongs to it. Idempotent.
pub async fn remove_container(
    paths: &Paths,
    host: &NetHost,
    rec: &ContainerRecord,
    timeout: Option<Duration>,
) -> Result<()> {
    runtime::stop(paths, rec, runtime::grace(rec, timeout))?;
    let state = load_state(paths, &rec.id)?;
    let maps = super::up::port_mappings(rec, &state.ports);
    if !maps.is_empty() {
        host.unpublish(&maps)
            .with_context(|| format!("unpublishing the ports of {}", rec.name))?;
    }
    for att in &rec.networks {
        host.detach(&att.host_ifname).await?;
        if let Some(n) = network::load(paths, &att.network)? {
            network::allocator(paths, &n.network).release(&rec.id)?;
        }
    }
    crate::net::remove_netns(&paths.netns(&rec.id))?;
    runtime::remove(paths, rec)?;
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
