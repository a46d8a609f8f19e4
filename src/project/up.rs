//! `up`: make the project's containers, networks and volumes match the compose file.
//!
//! The planner compares what exists (containers carrying the project label) with what the
//! compose file asks for and returns a `Plan`; the executor applies it. Everything that could
//! fail because of bad input (images, ports, names) is checked before anything is created.
use super::container::{container_name, record};
use super::{Progress, containers, graph, net_host, network};
use crate::compose::{Project, VolumeType};
use crate::engine::container::{ContainerRecord, NetworkAttachment, Status, labels};
use crate::engine::image::{Image, ImageStore};
use crate::engine::{runtime, volume};
use crate::net::{PortMapping, Protocol};
use crate::state::{Paths, short_hash};
use anyhow::{Context, Result, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What `up` will do for one container of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Up to date and running: nothing to do.
    Keep { service: String, container: String },
    /// Exists with the same configuration but is stopped: start it again.
    Start { service: String, container: String },
    /// Configuration changed: remove the old container, create a new one with its number.
    Recreate {
        service: String,
        container: String,
        number: u32,
    },
    /// A new replica.
    Create { service: String, number: u32 },
    /// A replica above the wanted scale, or a container of a service that no longer exists
    /// (with `--remove-orphans`).
    Remove { service: String, container: String },
}

impl Action {
    pub fn service(&self) -> &str {
        match self {
            Action::Keep { service, .. }
            | Action::Start { service, .. }
            | Action::Recreate { service, .. }
            | Action::Create { service, .. }
            | Action::Remove { service, .. } => service,
        }
    }
    /// Whether this action leaves a container to be (re)started.
    pub fn starts(&self) -> bool {
        matches!(
            self,
            Action::Start { .. } | Action::Recreate { .. } | Action::Create { .. }
        )
    }
}

/// How many replicas of a service are wanted: `--scale`, else `scale`, else
/// `deploy.replicas`, else 1.
pub fn replicas(project: &Project, service: &str, overrides: &BTreeMap<String, u32>) -> u32 {
    if let Some(n) = overrides.get(service) {
        return *n;
    }
    let svc = &project.services[service];
    svc.scale
        .or_else(|| svc.deploy.as_ref().and_then(|d| d.replicas))
        .map_or(1, |n| n.max(0) as u32)
}

/// Compares the existing containers with the project. Replica numbers are reused: a missing
/// number is filled before a new one is added, and scaling down removes the highest numbers.
pub fn plan(
    paths: &Paths,
    project: &Project,
    images: &BTreeMap<String, Image>,
    existing: &[(ContainerRecord, Status)],
    opts: &UpOptions,
    drift: &Drift,
) -> Vec<Action> {
    let (scale, remove_orphans) = (&opts.scale, opts.remove_orphans);
    let mut actions = Vec::new();
    for (name, svc) in &project.services {
        // Services on a changed network or volume are part of the plan even when not selected.
        let forced = drift.recreate.contains(name);
        let drifted = forced || drift.reattach.contains(name);
        if !opts.services.is_empty() && !opts.services.contains(name) && !drifted {
            continue;
        }
        // The configuration (the hash `config --hash` prints) and the image, each by its label.
        let hash = svc.config_hash();
        let image_id = images[name].id.as_str();
        let want = replicas(project, name, scale);
        let mine: Vec<&(ContainerRecord, Status)> = existing
            .iter()
            .filter(|(c, _)| c.service() == Some(name) && !is_oneoff(c))
            .collect();
        for number in 1..=want {
            let found = mine.iter().find(|(c, _)| replica_number(c) == Some(number));
            let service = name.clone();
            actions.push(match found {
                None => Action::Create { service, number },
                Some((c, status)) => {
                    let container = c.name.clone();
                    let same = !forced
                        && match opts.recreate_policy(name) {
                            Recreate::Diverged => {
                                c.label(labels::CONFIG_HASH) == Some(hash.as_str())
                                    && c.label(labels::IMAGE) == Some(image_id)
                            }
                            Recreate::Force => false,
                            Recreate::Never => true,
                        };
                    match (same, status) {
                        (true, Status::Running) => Action::Keep { service, container },
                        // Made by `create` (its preparation finished, no shim ever spawned for
                        // it): start it as it is.
                        (true, Status::Created) if never_started(paths, c) => {
                            Action::Start { service, container }
                        }
                        // Never started: an `up` may have been killed halfway through preparing
                        // it (record written, files or mounts missing), so make it anew.
                        (true, Status::Created) => Action::Recreate {
                            service,
                            container,
                            number,
                        },
                        (true, _) => Action::Start { service, container },
                        (false, _) => Action::Recreate {
                            service,
                            container,
                            number,
                        },
                    }
                }
            });
        }
        for (c, _) in &mine {
            if replica_number(c).is_none_or(|n| n > want) {
                actions.push(Action::Remove {
                    service: name.clone(),
                    container: c.name.clone(),
                });
            }
        }
    }
    if remove_orphans {
        for (c, _) in orphans(project, existing) {
            actions.push(Action::Remove {
                service: c.service().unwrap_or_default().to_string(),
                container: c.name.clone(),
            });
        }
    }
    actions
}

/// `depends_on: {X: {restart: true}}`: a running, up-to-date container of a service whose
/// dependency X is recreated is restarted with it, as docker compose does (never on an engine
/// auto-restart of X, which berth's shim does without the CLI).
pub fn restart_dependents(project: &Project, actions: &mut [Action]) {
    let recreated: BTreeSet<String> = actions
        .iter()
        .filter(|a| matches!(a, Action::Recreate { .. }))
        .map(|a| a.service().to_string())
        .collect();
    for a in actions.iter_mut() {
        if let Action::Keep { service, container } = a
            && project.services.get(service.as_str()).is_some_and(|s| {
                s.depends_on
                    .iter()
                    .any(|(dep, d)| d.restart && recreated.contains(dep))
            })
        {
            *a = Action::Start {
                service: std::mem::take(service),
                container: std::mem::take(container),
            };
        }
    }
}

/// Containers of the project whose service is no longer in the compose file, and one-off
/// (`run`) containers that have exited, as docker compose counts them.
pub fn orphans<'a>(
    project: &Project,
    existing: &'a [(ContainerRecord, Status)],
) -> Vec<&'a (ContainerRecord, Status)> {
    existing
        .iter()
        .filter(|(c, status)| {
            if is_oneoff(c) {
                return *status == Status::Exited;
            }
            // A service disabled by its profile is still the project's (docker compose).
            c.service().is_some_and(|s| {
                !project.services.contains_key(s) && !project.disabled_services.contains_key(s)
            })
        })
        .collect()
}

/// A boolean setting as docker compose reads one (Go's `ParseBool`, plus `y`).
pub fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "t" | "true" | "y"
        )
    })
}

/// `COMPOSE_IGNORE_ORPHANS`, from the environment or the project's `.env`.
pub fn ignore_orphans(project: &Project) -> bool {
    truthy(
        project
            .environment
            .get("COMPOSE_IGNORE_ORPHANS")
            .map(String::as_str),
    )
}

/// A container `create` made whole and nothing tried to start yet. One with a shim recorded was
/// being started by an `up` that may have been killed (its shim may still hold its ports), and
/// one without the `prepared` marker may be half made: both are recreated instead.
fn never_started(paths: &Paths, c: &ContainerRecord) -> bool {
    runtime::prepared(paths, c) && c.state(paths).is_ok_and(|s| s.shim_pid.is_none())
}

fn replica_number(c: &ContainerRecord) -> Option<u32> {
    c.label(labels::NUMBER)?.parse().ok()
}

pub fn is_oneoff(c: &ContainerRecord) -> bool {
    c.label(labels::ONEOFF) == Some("True")
}

/// When `up` recreates a container whose configuration is unchanged (`--force-recreate`,
/// `--no-recreate`; docker compose's default is `Diverged`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Recreate {
    #[default]
    Diverged,
    Force,
    Never,
}

pub struct UpOptions {
    /// `--force-recreate` / `--no-recreate`, for the services named to `up` (all when none).
    pub recreate: Recreate,
    /// For their dependencies: `--always-recreate-deps` forces, `--no-recreate` never.
    pub recreate_deps: Recreate,
    /// The services named on the command line (empty: all of them are).
    pub named: BTreeSet<String>,
    /// `create`: make the containers but leave them in state `created`.
    pub no_start: bool,
    /// `-t` for containers that are recreated; `None` uses their grace period.
    pub timeout: Option<std::time::Duration>,
    /// `--wait`: return once everything is running and healthy (or exited 0).
    pub wait: bool,
    pub wait_timeout: Option<std::time::Duration>,
    /// `--pull`: replaces every service's `pull_policy`.
    pub pull: Option<super::pull::PullPolicy>,
    /// `--build` / `--no-build`.
    pub build: super::pull::BuildMode,
    /// `--scale SERVICE=N`.
    pub scale: BTreeMap<String, u32>,
    /// `--remove-orphans` (or `COMPOSE_REMOVE_ORPHANS`).
    pub remove_orphans: bool,
    /// `--dry-run`: print the plan, change nothing.
    pub dry_run: bool,
    /// `up SERVICE...` with their dependencies (see [`with_dependencies`]); empty means all.
    pub services: BTreeSet<String>,
    /// `-V`: a recreated container gets new anonymous volumes instead of its predecessor's
    /// (which are removed).
    pub renew_anon_volumes: bool,
    /// Asks the user a yes/no question (recreating a volume whose definition changed loses its
    /// data): `-y` answers yes, [`never`] no.
    pub confirm: fn(&str) -> bool,
}

impl UpOptions {
    /// The recreate policy of a service: `recreate` for the services named to `up`,
    /// `recreate_deps` for the dependencies it brings along, as docker compose has it.
    pub fn recreate_policy(&self, service: &str) -> Recreate {
        if self.named.is_empty() || self.named.contains(service) {
            self.recreate
        } else {
            self.recreate_deps
        }
    }
}

/// A [`UpOptions::confirm`] that answers no without asking.
pub fn never(_: &str) -> bool {
    false
}

/// The named services and, unless `no_deps`, everything they depend on.
pub fn with_dependencies(
    project: &Project,
    names: &[String],
    no_deps: bool,
) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<String> = names.to_vec();
    while let Some(n) = todo.pop() {
        let Some(svc) = project.services.get(&n) else {
            bail!("no such service: {n}");
        };
        if out.insert(n.clone()) && !no_deps {
            // A `required: false` dependency that is not part of the project (its profile is
            // off) is skipped, as docker compose skips it.
            todo.extend(
                svc.depends_on
                    .iter()
                    .filter(|(d, dep)| dep.required || project.services.contains_key(*d))
                    .map(|(d, _)| d.clone()),
            );
        }
    }
    Ok(out)
}

/// `--no-deps`: the selected services' `depends_on` entries naming a service outside the
/// selection are dropped, as docker compose drops them with the unselected services, so such a
/// dependency is neither started nor waited for.
pub fn drop_unselected_dependencies(project: &mut Project, selected: &BTreeSet<String>) {
    if selected.is_empty() {
        return;
    }
    for (name, svc) in project.services.iter_mut() {
        if selected.contains(name) {
            svc.depends_on.retain(|dep, _| selected.contains(dep));
        }
    }
}

/// Leaves out the networks and named volumes no selected service uses (all services when
/// `selected` is empty), as docker compose does before `up`/`create`: an unused network is
/// not made, and an unused missing `external` one fails nothing.
pub fn drop_unused_resources(project: &mut Project, selected: &BTreeSet<String>) {
    let used = |name: &String| selected.is_empty() || selected.contains(name);
    let mut networks = BTreeSet::new();
    let mut volumes = BTreeSet::new();
    for (_, svc) in project.services.iter().filter(|(n, _)| used(n)) {
        networks.extend(svc.networks.keys().cloned());
        volumes.extend(
            svc.volumes
                .iter()
                .filter(|v| v.kind == VolumeType::Volume)
                .filter_map(|v| v.source.clone()),
        );
    }
    project.networks.retain(|k, _| networks.contains(k));
    project.volumes.retain(|k, _| volumes.contains(k));
}

/// Runs `up -d`. On error, what was created stays recorded so `up` or `down` can finish.
pub async fn up(
    paths: &Paths,
    project: &Project,
    opts: &UpOptions,
    progress: &dyn Progress,
) -> Result<()> {
    let _lock = super::lock(paths, &project.name)?;
    // A cycle is an error before anything is created.
    graph::levels(project)?;

    // 1. Everything that bad input can break, before anything is created.
    let store = ImageStore::open(&paths.images())?;
    let image_opts = super::pull::ImageOptions {
        pull: opts.pull,
        build: opts.build,
        services: opts.services.clone(),
    };
    let images = super::pull::ensure_images(paths, project, &store, &image_opts, progress).await?;
    let existing: Vec<(ContainerRecord, Status)> = containers(paths, &project.name)?
        .into_iter()
        .map(|c| {
            let s = c.state(paths).map(|s| s.status).unwrap_or_default();
            (c, s)
        })
        .collect();
    if let Some(e) = graph::missing_shared(project, &opts.services, |s| {
        existing
            .iter()
            .any(|(c, _)| c.service() == Some(s) && !is_oneoff(c))
    }) {
        bail!(e);
    }
    // Networks and volumes whose definition changed: the containers using them are
    // recreated, and they are made anew in between.
    let drift = drift(paths, project, opts, &existing)?;
    let mut actions = plan(paths, project, &images, &existing, opts, &drift);
    if !opts.no_start {
        restart_dependents(project, &mut actions);
    }
    // A container on a changed network keeps its identity: it is stopped, moved to the new
    // network and started again, as docker compose does.
    for a in actions.iter_mut() {
        if let Action::Keep { service, container } = a
            && drift.reattach.contains(service.as_str())
        {
            *a = Action::Start {
                service: std::mem::take(service),
                container: std::mem::take(container),
            };
        }
    }
    let left = orphans(project, &existing);
    if !opts.remove_orphans && !left.is_empty() && !ignore_orphans(project) {
        let names: Vec<&str> = left.iter().map(|(c, _)| c.name.as_str()).collect();
        tracing::warn!(
            "Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            names.join(", ")
        );
    }
    if opts.dry_run {
        for a in &actions {
            progress.event("Plan", a.service(), &format!("{a:?}"));
        }
        return Ok(());
    }
    let creating: BTreeSet<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { service, .. } | Action::Recreate { service, .. } => {
                Some(service.as_str())
            }
            _ => None,
        })
        .collect();
    check_ports(project, &creating, &existing)?;
    create_bind_sources(project)?;

    // 2. Volumes and networks.
    let host = net_host(paths);
    // No `volume rm`/`prune` until the containers mounting the volumes are saved (step 4).
    let volumes_lock = volume::lock_for_use(paths)?;
    crate::sys::timing::mark("up planned");
    let (volume_dirs, networks) = ensure_resources(paths, &host, project, progress).await?;
    crate::sys::timing::mark("up resources");
    // The running containers' published ports, again: their elements are gone if the ruleset
    // was flushed behind our back (adding an element that exists is a no-op).
    for (c, status) in &existing {
        if *status == Status::Running && !c.ports.is_empty() {
            let bound = c.state(paths).map(|s| s.ports).unwrap_or_default();
            publish(&host, c, &bound)?;
        }
    }

    // Dependents restarted with a recreated dependency (`depends_on.restart`) stop first, and
    // start again in step 5 once the dependency is back.
    // So do the containers on a changed network (docker compose says they stop, running or not).
    for a in &actions {
        if let Action::Start { container, service } = a
            && let Some((c, status)) = existing.iter().find(|(c, _)| &c.name == container)
            && (*status == Status::Running || drift.reattach.contains(service.as_str()))
        {
            progress.event("Container", &c.name, "Stopping");
            runtime::stop(paths, c, runtime::grace(c, opts.timeout))?;
            let bound = c.state(paths).map(|s| s.ports).unwrap_or_default();
            let maps = port_mappings(c, &bound);
            if !maps.is_empty() {
                host.unpublish(&maps)?;
            }
            progress.event("Container", &c.name, "Stopped");
        }
    }

    // 3. Old containers out.
    for a in &actions {
        if let Action::Recreate { container, .. } | Action::Remove { container, .. } = a
            && let Some((c, _)) = existing.iter().find(|(c, _)| &c.name == container)
        {
            // Those on a changed network or volume are stopped first, as docker compose says.
            if c.service().is_some_and(|s| drift.recreate.contains(s)) {
                progress.event("Container", &c.name, "Stopping");
                runtime::stop(paths, c, runtime::grace(c, opts.timeout))?;
                progress.event("Container", &c.name, "Stopped");
            }
            // docker compose's words: a replaced container is `Recreate`d, then `Recreated`.
            let recreate = matches!(a, Action::Recreate { .. });
            if recreate {
                progress.event("Container", &c.name, "Recreate");
            }
            super::down::remove_container(paths, &host, c, opts.timeout).await?;
            if !recreate {
                progress.event("Container", &c.name, "Removed");
            }
            if opts.renew_anon_volumes {
                super::anonymous::remove(paths, c)?;
            }
        }
    }

    // Changed networks and volumes, now that no running container uses them: removed and made
    // anew. The containers that stay (stopped above) are detached first and attached again to
    // the new network, with new addresses.
    let (mut volume_dirs, mut networks) = (volume_dirs, networks);
    let mut existing = existing;
    let gone: BTreeSet<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Recreate { container, .. } | Action::Remove { container, .. } => {
                Some(container.as_str())
            }
            _ => None,
        })
        .collect();
    for (key, host_name) in &drift.networks {
        let staying: Vec<usize> = (0..existing.len())
            .filter(|&i| {
                let c = &existing[i].0;
                !gone.contains(c.name.as_str())
                    && c.networks.iter().any(|a| &a.network == host_name)
            })
            .collect();
        for &i in &staying {
            for att in existing[i]
                .0
                .networks
                .iter()
                .filter(|a| &a.network == host_name)
            {
                host.detach(&att.host_ifname).await?;
            }
        }
        if let Some(r) = network::load(paths, host_name)? {
            network::remove(paths, &host, &r.network).await?;
            progress.event("Network", host_name, "Removed");
        }
        let net = &project.networks[key];
        let spec = network::NetworkSpec::from_compose(host_name, net)?;
        let l = network_labels(project, key, host_name, net);
        let (n, _) = network::ensure(paths, &host, host_name, &spec, &l).await?;
        progress.event("Network", host_name, "Created");
        for &i in &staying {
            reattach(paths, &host, project, &mut existing[i].0, key, &n).await?;
        }
        networks.insert(key.clone(), n);
    }
    // A stopped container to start again whose link to a network is gone (an `up` killed while
    // moving it to a remade network) is attached again, so it never starts cut off.
    let starting: BTreeSet<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { container, .. } => Some(container.as_str()),
            _ => None,
        })
        .collect();
    for (c, status) in existing.iter_mut() {
        if *status == Status::Running || !starting.contains(c.name.as_str()) {
            continue;
        }
        for (key, n) in &networks {
            let cut = c.networks.iter().any(|a| {
                a.network == n.name
                    && !std::path::Path::new("/sys/class/net")
                        .join(&a.host_ifname)
                        .exists()
            });
            if cut {
                reattach(paths, &host, project, c, key, n).await?;
            }
        }
    }
    for (key, host_name) in &drift.volumes {
        volume::remove(paths, host_name)?;
        progress.event("Volume", host_name, "Removed");
        let vol = &project.volumes[key];
        let l = volume_labels(project, key, host_name, vol);
        let (dir, _) = volume::ensure_with_options(paths, host_name, &l, &vol.driver_opts)?;
        progress.event("Volume", host_name, "Created");
        volume_dirs.insert(key.clone(), dir);
    }

    // 4. New containers: records, addresses, namespaces and links, before any starts.
    // Keyed by container name; every container that stays, old or new.
    let mut all: BTreeMap<String, ContainerRecord> = BTreeMap::new();
    let mut fresh: BTreeSet<String> = BTreeSet::new();
    // New containers whose namespace is their own (or the host's) are set up in parallel;
    // those sharing another container's (`network_mode: service:|container:`) after them, in
    // order. Namespaces shared with a container created later in that loop are queued.
    let mut own_ns = Vec::new();
    let mut shared_ns = Vec::new();
    for a in &actions {
        match a {
            Action::Remove { .. } => {}
            Action::Keep { container, .. } | Action::Start { container, .. } => {
                if let Some((c, _)) = existing.iter().find(|(c, _)| &c.name == container) {
                    all.insert(c.name.clone(), c.clone());
                }
            }
            Action::Create { service, number }
            | Action::Recreate {
                service, number, ..
            } => {
                let svc = &project.services[service];
                let mut rec = record(project, svc, *number, &images[service], &volume_dirs)?;
                if let Action::Recreate { container, .. } = a
                    && !opts.renew_anon_volumes
                    && let Some((old, _)) = existing.iter().find(|(c, _)| &c.name == container)
                {
                    super::anonymous::inherit(&mut rec, old);
                }
                if shares_other_netns(svc) {
                    shared_ns.push(rec);
                } else {
                    own_ns.push(rec);
                }
            }
        }
    }
    let kept = all.clone();
    crate::sys::timing::mark("up records");
    let made = super::par::map(&own_ns, super::par::PREPARE_LIMIT, |rec| -> Result<_> {
        let svc = &project.services[rec.service().unwrap_or_default()];
        let mut rec = rec.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut later = Vec::new();
        rt.block_on(materialize_with(
            paths,
            &host,
            project,
            &mut rec,
            svc,
            &networks,
            &kept,
            &mut later,
            &mut |_| Ok(()),
        ))?;
        Ok(rec)
    });
    let mut first_error = None;
    for r in made {
        match r {
            Ok(rec) => {
                fresh.insert(rec.name.clone());
                all.insert(rec.name.clone(), rec);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut share_later = Vec::new();
    for mut rec in shared_ns {
        let svc = &project.services[rec.service().unwrap_or_default()];
        materialize_with(
            paths,
            &host,
            project,
            &mut rec,
            svc,
            &networks,
            &all,
            &mut share_later,
            &mut |_| Ok(()),
        )
        .await?;
        fresh.insert(rec.name.clone());
        all.insert(rec.name.clone(), rec);
    }
    for (netns, service, first_error) in share_later {
        match shared_netns(paths, project, &project.services[&service], &all) {
            Ok(Some(source)) => crate::net::netns::share_netns(&netns, &source)?,
            _ => return Err(first_error),
        }
    }
    let hosts = hosts_file(all.values());
    // What `host-gateway` in extra_hosts means: the gateway of the container's first network.
    let gateway = |rec: &ContainerRecord| {
        let first = rec.networks.first()?;
        networks
            .values()
            .find(|n| n.name == first.network)
            .map(|n| n.gateway)
    };
    let host_resolv = host_resolv_conf();
    let replaced: BTreeSet<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Recreate { container, .. } => Some(container.as_str()),
            _ => None,
        })
        .collect();
    crate::sys::timing::mark("up materialized");
    let fresh_recs: Vec<&ContainerRecord> =
        all.values().filter(|r| fresh.contains(&r.name)).collect();
    // Files and the overlay mount of each new container, also in parallel.
    let prepared = super::par::map(
        &fresh_recs,
        super::par::PREPARE_LIMIT,
        |rec| -> Result<()> {
            let svc = &project.services[rec.service().unwrap_or_default()];
            let (resolv, dns) = resolv_conf(svc, &networks, &host_resolv)?;
            crate::state::write_json(&rec.dir(paths).join("dns.json"), &dns)?;
            runtime::prepare(paths, rec, &with_own(&hosts, rec, gateway(rec)), &resolv)?;
            let done = if replaced.contains(rec.name.as_str()) {
                "Recreated"
            } else {
                "Created"
            };
            progress.event("Container", &rec.name, done);
            Ok(())
        },
    );
    prepared.into_iter().collect::<Result<Vec<()>>>()?;
    crate::sys::timing::mark("up prepared");
    for (name, rec) in &all {
        if !fresh.contains(name) {
            // Running containers see the new peers at once: the file is bind-mounted.
            let _ = runtime::write_file(
                &rec.dir(paths).join("hosts"),
                &with_own(&hosts, rec, gateway(rec)),
            );
        }
    }

    drop(volumes_lock);
    // `create` stops here: the containers exist, in state `created`.
    if opts.no_start {
        return Ok(());
    }

    // 5. Start each service once its dependencies' conditions hold.
    let to_start: BTreeSet<String> = actions
        .iter()
        .filter(|a| a.starts())
        .filter_map(|a| match a {
            Action::Start { container, .. } => Some(container.clone()),
            Action::Create { service, number }
            | Action::Recreate {
                service, number, ..
            } => Some(container_name(
                &project.name,
                &project.services[service],
                *number,
            )),
            _ => None,
        })
        .collect();
    let create_one =
        |rec: &ContainerRecord| -> Result<runtime::Created> { Ok(runtime::create(paths, rec)?) };
    let start_one = |rec: &ContainerRecord, created: runtime::Created| -> Result<()> {
        let ready = created.start(paths, rec)?;
        publish(&host, rec, &ready.ports)
    };
    crate::sys::timing::mark("up starting");
    super::start::start_all_created(
        paths,
        project,
        &all,
        &to_start,
        progress,
        &create_one,
        &start_one,
    )?;
    if opts.wait {
        let recs: Vec<&ContainerRecord> = all.values().collect();
        super::start::wait_ready(paths, &recs, opts.wait_timeout)?;
        for rec in recs {
            let healthy = rec.supervision.healthcheck.is_some();
            progress.event(
                "Container",
                &rec.name,
                if healthy { "Healthy" } else { "Ready" },
            );
        }
    }
    Ok(())
}

/// A compose network's labels: the user's, the project's and docker compose's config hash.
fn network_labels(
    project: &Project,
    key: &str,
    host_name: &str,
    net: &crate::compose::Network,
) -> BTreeMap<String, String> {
    let mut l = net.labels.clone();
    l.insert(labels::PROJECT.into(), project.name.clone());
    l.insert(labels::NETWORK.into(), key.to_string());
    l.insert(labels::CONFIG_HASH.into(), network_hash(host_name, net));
    l
}

fn volume_labels(
    project: &Project,
    key: &str,
    host_name: &str,
    vol: &crate::compose::Volume,
) -> BTreeMap<String, String> {
    let mut l = vol.labels.clone();
    l.insert(labels::PROJECT.into(), project.name.clone());
    l.insert(labels::VOLUME.into(), key.to_string());
    l.insert(labels::CONFIG_HASH.into(), volume_hash(host_name, vol));
    l
}

/// The hash of a network's definition (every key, with its name on the host), kept in its
/// `config-hash` label: when it changes, `up` recreates the network.
pub fn network_hash(host_name: &str, net: &crate::compose::Network) -> String {
    let json = serde_json::to_string(&(host_name, net)).unwrap_or_default();
    short_hash(json.as_bytes(), 64)
}

/// The same for a volume (`driver` defaults to `local`, as docker compose's hash has it).
pub fn volume_hash(host_name: &str, vol: &crate::compose::Volume) -> String {
    let mut vol = vol.clone();
    vol.driver.get_or_insert_with(|| "local".into());
    let json = serde_json::to_string(&(host_name, &vol)).unwrap_or_default();
    short_hash(json.as_bytes(), 64)
}

/// Networks and volumes of the project whose definition changed since the project made them
/// (their `config-hash` label differs; one without the label is left alone, as docker compose
/// does), keyed as in the compose file with their host names, and the services whose
/// containers use them.
#[derive(Debug, Default)]
pub struct Drift {
    pub networks: BTreeMap<String, String>,
    pub volumes: BTreeMap<String, String>,
    /// Services on a changed volume: their containers are recreated.
    pub recreate: BTreeSet<String>,
    /// Services on a changed network only: their containers are stopped, attached to the new
    /// network and started again.
    pub reattach: BTreeSet<String>,
}

/// Attaches a stopped container that stays to the network `key` made anew: new addresses (or
/// the compose file's static ones), a new veth into its namespace, its record saved.
async fn reattach(
    paths: &Paths,
    host: &crate::net::NetHost,
    project: &Project,
    rec: &mut ContainerRecord,
    key: &str,
    n: &crate::net::BridgeNetwork,
) -> Result<()> {
    let svc = rec.service().and_then(|s| project.services.get(s));
    let sn = svc.and_then(|s| s.networks.get(key));
    let netns = paths.netns(&rec.id);
    for i in 0..rec.networks.len() {
        if rec.networks[i].network != n.name {
            continue;
        }
        let alloc = network::allocator(paths, n);
        let ip = match sn.and_then(|sn| sn.ipv4_address.as_deref()) {
            Some(want) => {
                let ip = want
                    .parse()
                    .with_context(|| format!("ipv4_address {want:?} is not an IPv4 address"))?;
                alloc.allocate_static(&rec.id, ip)?;
                ip
            }
            None => alloc.allocate(&rec.id)?,
        };
        let want6 = sn
            .and_then(|sn| sn.ipv6_address.as_deref())
            .map(|w| {
                w.parse::<std::net::Ipv6Addr>()
                    .with_context(|| format!("ipv6_address {w:?} is not an IPv6 address"))
            })
            .transpose()?;
        let ip6 = network::address6(paths, n, &rec.id, ip, want6)?;
        let mac = sn
            .and_then(|sn| sn.mac_address.as_deref())
            .or(if i == 0 {
                svc.and_then(|s| s.mac_address.as_deref())
            } else {
                None
            })
            .map(parse_mac)
            .transpose()?;
        let att = &mut rec.networks[i];
        att.ip = ip;
        att.ip6 = ip6;
        att.mac = Some(crate::net::format_mac(
            mac.unwrap_or_else(|| crate::net::derived_mac(ip)),
        ));
        att.static_ip = sn.and_then(|sn| sn.ipv4_address.as_ref()).map(|_| ip);
        att.static_ip6 = want6;
        host.attach_with_mac(&netns, n, (ip, ip6), &att.host_ifname, &att.ifname, mac)
            .await
            .with_context(|| format!("attaching {} to network {}", rec.name, n.name))?;
    }
    rec.save(paths)?;
    Ok(())
}

/// Finds the [`Drift`]. As docker compose: a network is recreated (it holds no data); a volume
/// only once the user agrees (`-y`, or an answer on stdin), since its data is lost; a network or
/// volume of that name that this project did not create is used as it is, with a warning. Fails,
/// before anything changes, when something `up` does not recreate (a one-off, another
/// project's container) uses what must be made anew.
fn drift(
    paths: &Paths,
    project: &Project,
    opts: &UpOptions,
    existing: &[(ContainerRecord, Status)],
) -> Result<Drift> {
    let host_name = |key: &str, name: &Option<String>| {
        name.clone()
            .unwrap_or_else(|| format!("{}_{key}", project.name))
    };
    let mut drift = Drift::default();
    for (key, net) in project.networks.iter().filter(|(_, n)| !n.external) {
        let name = host_name(key, &net.name);
        let Some(r) = network::load(paths, &name)? else {
            continue;
        };
        match r.labels.get(labels::PROJECT) {
            None => tracing::warn!(
                "a network with name {name} exists but was not created by compose.
Set `external: true` to use an existing network"
            ),
            Some(p) if p != &project.name => tracing::warn!(
                "a network with name {name} exists but was not created for project {:?}.
Set `external: true` to use an existing network",
                project.name
            ),
            Some(_) => {
                if r.labels
                    .get(labels::CONFIG_HASH)
                    .is_some_and(|h| *h != network_hash(&name, net))
                {
                    drift.networks.insert(key.clone(), name);
                }
            }
        }
    }
    let volumes = volume::list(paths)?;
    for (key, vol) in project.volumes.iter().filter(|(_, v)| !v.external) {
        let name = host_name(key, &vol.name);
        let Some(r) = volumes.iter().find(|v| v.name == name) else {
            continue;
        };
        match r.labels.get(labels::PROJECT) {
            None => tracing::warn!(
                "volume {name:?} already exists but was not created by Docker Compose. Use `external: true` to use an existing volume"
            ),
            Some(p) if p != &project.name => tracing::warn!(
                "volume {name:?} already exists but was created for project {p:?} (expected {:?}). Use `external: true` to use an existing volume",
                project.name
            ),
            Some(_) => {
                if r.labels
                    .get(labels::CONFIG_HASH)
                    .is_some_and(|h| *h != volume_hash(&name, vol))
                    && (opts.confirm)(&format!(
                        "Volume {name:?} exists but doesn't match configuration in compose file. Recreate (data will be lost)?"
                    ))
                {
                    drift.volumes.insert(key.clone(), name);
                }
            }
        }
    }
    let switched = switched_volumes(project, existing);
    if drift.networks.is_empty() && drift.volumes.is_empty() {
        drift.recreate = switched;
        return Ok(drift);
    }
    let on_network = |c: &ContainerRecord| {
        c.networks
            .iter()
            .find(|a| drift.networks.values().any(|n| *n == a.network))
            .map(|a| format!("network {}", a.network))
    };
    let on_volume = |c: &ContainerRecord| {
        c.mounts
            .iter()
            .filter_map(|m| m.volume.as_ref())
            .find(|v| drift.volumes.values().any(|d| d == *v))
            .map(|v| format!("volume {v}"))
    };
    let orphans: Vec<&str> = orphans(project, existing)
        .iter()
        .map(|(c, _)| c.name.as_str())
        .collect();
    let (mut recreate, mut reattach) = (BTreeSet::new(), BTreeSet::new());
    for c in crate::engine::container::list(paths)? {
        let (net, vol) = (on_network(&c), on_volume(&c));
        let Some(what) = vol.clone().or(net.clone()) else {
            continue;
        };
        let ours = c.project() == Some(project.name.as_str()) && !is_oneoff(&c);
        match c.service() {
            Some(s) if ours && project.services.contains_key(s) => {
                if vol.is_some() {
                    recreate.insert(s.to_string());
                } else {
                    reattach.insert(s.to_string());
                }
            }
            _ if ours && opts.remove_orphans && orphans.contains(&c.name.as_str()) => {}
            _ => bail!(
                "{what} must be recreated as its configuration changed, but container {} uses it
hint: remove that container first, or run `down` (with --remove-orphans) and `up` again",
                c.name
            ),
        }
    }
    recreate.extend(switched);
    reattach.retain(|s| !recreate.contains(s));
    (drift.recreate, drift.reattach) = (recreate, reattach);
    Ok(drift)
}

/// Services with a container that mounts another named volume at a target than the compose
/// file now names there (an `external` volume's `name:` changed): they are recreated, as
/// docker compose does when a container misses an expected volume.
fn switched_volumes(project: &Project, existing: &[(ContainerRecord, Status)]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (c, _) in existing.iter().filter(|(c, _)| !is_oneoff(c)) {
        let Some(svc) = c.service().and_then(|s| project.services.get(s)) else {
            continue;
        };
        for v in svc.volumes.iter().filter(|v| v.kind == VolumeType::Volume) {
            let Some(vol) = v
                .source
                .as_ref()
                .and_then(|k| project.volumes.get(k).map(|d| (k, d)))
            else {
                continue;
            };
            let want = vol
                .1
                .name
                .clone()
                .unwrap_or_else(|| format!("{}_{}", project.name, vol.0));
            if c.mounts
                .iter()
                .any(|m| m.target == v.target && m.volume.as_ref().is_some_and(|n| *n != want))
            {
                out.insert(svc.name.clone());
            }
        }
    }
    out
}

/// Makes the project's named volumes and networks exist; returns the volume directories and
/// the networks, both keyed as in the compose file.
pub async fn ensure_resources(
    paths: &Paths,
    host: &crate::net::NetHost,
    project: &Project,
    progress: &dyn Progress,
) -> Result<(
    BTreeMap<String, PathBuf>,
    BTreeMap<String, crate::net::BridgeNetwork>,
)> {
    let mut volume_dirs = BTreeMap::new();
    let host_name = |key: &str, vol: &crate::compose::Volume| {
        vol.name
            .clone()
            .unwrap_or_else(|| format!("{}_{key}", project.name))
    };
    // Every volume's driver and `driver_opts` are checked before any volume is made.
    for (key, vol) in project.volumes.iter().filter(|(_, v)| !v.external) {
        let name = host_name(key, vol);
        if let Some(d) = vol.driver.as_deref().filter(|d| *d != "local") {
            bail!(
                "create {name}: error looking up volume plugin {d}: plugin {d:?} not found (berth has the local driver only)"
            );
        }
        volume::check_options(&name, &vol.driver_opts)?;
    }
    for (key, vol) in &project.volumes {
        let host_name = host_name(key, vol);
        let (l, options) = if vol.external {
            (vol.labels.clone(), BTreeMap::new())
        } else {
            (
                volume_labels(project, key, &host_name, vol),
                vol.driver_opts.clone(),
            )
        };
        let (dir, created) = volume::ensure_with_options(paths, &host_name, &l, &options)?;
        if created {
            progress.event("Volume", &host_name, "Created");
        }
        volume_dirs.insert(key.clone(), dir);
    }
    let mut networks = BTreeMap::new();
    for (key, net) in &project.networks {
        let host_name = net
            .name
            .clone()
            .unwrap_or_else(|| format!("{}_{key}", project.name));
        if net.external {
            // Someone else's network (another project's, or `berth network create`): used as
            // it is, never created or removed by this project; its rules are re-applied.
            let r = network::load(paths, &host_name)?.ok_or_else(|| {
                anyhow!(
                    "network {host_name} declared as external, but could not be found\n\
                     hint: create it with `berth network create {host_name}`"
                )
            })?;
            host.ensure_network(&r.network)
                .await
                .with_context(|| format!("network {host_name}"))?;
            networks.insert(key.clone(), r.network);
            continue;
        }
        let spec = network::NetworkSpec::from_compose(&host_name, net)?;
        let l = network_labels(project, key, &host_name, net);
        let (n, created) = network::ensure(paths, host, &host_name, &spec, &l).await?;
        if created {
            progress.event("Network", &host_name, "Created");
        }
        networks.insert(key.clone(), n);
    }
    Ok((volume_dirs, networks))
}

/// Gives a new container record its addresses, saves it (from then on `down` can find and undo
/// it), and creates its network namespace attached to the service's networks, or shares the
/// namespace its `network_mode` names. A namespace to share with a container not created yet
/// is queued in `share_later`. Calls `saved` once the record is first saved (its directory
/// exists), before the namespace and links are made.
#[allow(clippy::too_many_arguments)]
pub async fn materialize_with(
    paths: &Paths,
    host: &crate::net::NetHost,
    project: &Project,
    rec: &mut ContainerRecord,
    svc: &crate::compose::Service,
    networks: &BTreeMap<String, crate::net::BridgeNetwork>,
    created: &BTreeMap<String, ContainerRecord>,
    share_later: &mut Vec<(PathBuf, String, anyhow::Error)>,
    saved: &mut (dyn FnMut(&ContainerRecord) -> Result<()> + Send),
) -> Result<()> {
    let service = &svc.name;
    super::anonymous::ensure(paths, rec)?;
    super::secrets::inject(paths, project, svc, rec)?;
    for (key, sn) in &svc.networks {
        let n = networks
            .get(key)
            .ok_or_else(|| anyhow!("service {service:?}: network {key:?} was not created"))?;
        let alloc = network::allocator(paths, n);
        let ip = match sn.ipv4_address.as_deref() {
            Some(want) => {
                let ip = want.parse().with_context(|| {
                    format!("service {service:?}: ipv4_address {want:?} is not an IPv4 address")
                })?;
                alloc
                    .allocate_static(&rec.id, ip)
                    .with_context(|| format!("service {service:?} on network {}", n.name))?;
                ip
            }
            None => alloc
                .allocate(&rec.id)
                .with_context(|| format!("network {}", n.name))?,
        };
        let want6 = sn
            .ipv6_address
            .as_deref()
            .map(|w| {
                w.parse::<std::net::Ipv6Addr>().with_context(|| {
                    format!("service {service:?}: ipv6_address {w:?} is not an IPv6 address")
                })
            })
            .transpose()?;
        let ip6 = network::address6(paths, n, &rec.id, ip, want6)
            .with_context(|| format!("service {service:?}"))?;
        let mut aliases = vec![service.clone()];
        aliases.extend(sn.aliases.iter().cloned());
        let first = rec.networks.is_empty();
        let mac = sn
            .mac_address
            .as_deref()
            .or(if first {
                svc.mac_address.as_deref()
            } else {
                None
            })
            .map(|m| {
                parse_mac(m).with_context(|| {
                    format!("service {service:?}: mac_address {m:?} is not a MAC address")
                })
            })
            .transpose()?
            .unwrap_or_else(|| crate::net::derived_mac(ip));
        rec.networks.push(NetworkAttachment {
            network: n.name.clone(),
            ip,
            ip6,
            host_ifname: format!(
                "vb{}",
                short_hash(format!("{}{}", rec.id, n.name).as_bytes(), 11)
            ),
            ifname: format!("eth{}", rec.networks.len()),
            aliases,
            mac: Some(crate::net::format_mac(mac)),
            static_ip: sn.ipv4_address.is_some().then_some(ip),
            static_ip6: want6,
        });
    }
    crate::sys::timing::mark("addresses allocated");
    rec.save(paths)?;
    saved(rec)?;
    crate::sys::timing::mark("container saved");
    let netns = paths.netns(&rec.id);
    match shared_netns(paths, project, svc, created) {
        Ok(Some(source)) => crate::net::netns::share_netns(&netns, &source)?,
        Ok(None) => crate::net::create_netns(&netns)?,
        Err(e) => share_later.push((netns.clone(), service.clone(), e)),
    }
    crate::sys::timing::mark("netns made");
    for att in &rec.networks {
        let n = networks
            .values()
            .find(|n| n.name == att.network)
            .ok_or_else(|| anyhow!("network {} vanished", att.network))?;
        let mac = att.mac.as_deref().map(parse_mac).transpose()?;
        host.attach_with_mac(
            &netns,
            n,
            (att.ip, att.ip6),
            &att.host_ifname,
            &att.ifname,
            mac,
        )
        .await?;
    }
    Ok(())
}

/// `aa:bb:cc:dd:ee:ff`.
fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split([':', '-'])
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()?;
    bytes
        .try_into()
        .map_err(|_| anyhow!("a MAC address has 6 bytes"))
}

/// Whether the service joins another container's network namespace (`network_mode:
/// service:NAME` or `container:NAME`), so its set-up waits for that container's.
fn shares_other_netns(svc: &crate::compose::Service) -> bool {
    svc.network_mode
        .as_deref()
        .is_some_and(|m| m.starts_with("service:") || m.starts_with("container:"))
}

/// The namespace a container shares instead of having its own (`network_mode`): the host's,
/// or another container's. `none` and the default get their own.
fn shared_netns(
    paths: &Paths,
    project: &Project,
    svc: &crate::compose::Service,
    created: &BTreeMap<String, ContainerRecord>,
) -> Result<Option<PathBuf>> {
    let Some(mode) = svc.network_mode.as_deref() else {
        return Ok(None);
    };
    let name = &svc.name;
    if mode == "host" {
        // The CLI runs in the host's namespace.
        return Ok(Some(PathBuf::from("/proc/self/ns/net")));
    }
    if mode == "none" || mode == "bridge" || mode == "default" {
        return Ok(None);
    }
    let id = if let Some(other) = mode.strip_prefix("service:") {
        if !project.services.contains_key(other) {
            bail!("service {name:?}: network_mode refers to undefined service {other:?}");
        }
        let rec = created
            .values()
            .find(|c| c.service() == Some(other))
            .cloned()
            .or_else(|| {
                super::containers(paths, &project.name)
                    .ok()?
                    .into_iter()
                    .find(|c| c.service() == Some(other))
            })
            .ok_or_else(|| {
                anyhow!("service {name:?}: service {other:?} of its network_mode has no container")
            })?;
        rec.id
    } else if let Some(other) = mode.strip_prefix("container:") {
        crate::engine::container::list(paths)?
            .into_iter()
            .find(|c| c.name == other || c.id.starts_with(other))
            .map(|c| c.id)
            .ok_or_else(|| {
                anyhow!("service {name:?}: no such container {other:?} for network_mode")
            })?
    } else {
        bail!(
            "service {name:?}: network_mode {mode:?} is not supported (host, none, service:NAME or container:NAME)"
        );
    };
    Ok(Some(paths.netns(&id)))
}

/// The port mappings of a container, with the host ports its shim actually bound.
pub fn port_mappings(rec: &ContainerRecord, bound: &[u16]) -> Vec<PortMapping> {
    let Some(ip) = rec.networks.first().map(|n| n.ip) else {
        return Vec::new();
    };
    rec.ports
        .iter()
        .enumerate()
        .filter(|(_, p)| p.host_ip6.is_none())
        .map(|(i, p)| PortMapping {
            host_ip: p.host_ip,
            host_port: bound.get(i).copied().unwrap_or(p.host_port),
            protocol: if p.protocol == "udp" {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
            container_ip: ip,
            container_port: p.container_port,
        })
        .collect()
}

pub fn publish(host: &crate::net::NetHost, rec: &ContainerRecord, bound: &[u16]) -> Result<()> {
    let maps = port_mappings(rec, bound);
    if !maps.is_empty() {
        host.publish(&maps)
            .with_context(|| format!("publishing the ports of {}", rec.name))?;
    }
    Ok(())
}

/// Fails, before anything is created, when a host port wanted by a new container is taken by
/// a process other than this project's own containers.
fn check_ports(
    project: &Project,
    creating: &BTreeSet<&str>,
    existing: &[(ContainerRecord, Status)],
) -> Result<()> {
    // Ports our own containers hold (running, or still starting after a killed `up`) are freed
    // by their removal or kept by them; only someone else's are a conflict.
    let ours: BTreeSet<(u16, String)> = existing
        .iter()
        .flat_map(|(c, _)| c.ports.iter().map(|p| (p.host_port, p.protocol.clone())))
        .collect();
    for service in creating {
        let svc = &project.services[*service];
        for p in &svc.ports {
            let Some(Ok((first, end))) = p.published.as_deref().map(crate::net::parse_host_ports)
            else {
                continue;
            };
            let last = end.unwrap_or(first);
            // An IPv6 host address is bound by the shim's proxy, which reports a clash itself.
            if p.host_ip
                .as_deref()
                .is_some_and(|h| h.contains(':') && h != "::")
            {
                continue;
            }
            if first == 0 || (first..=last).any(|port| ours.contains(&(port, p.protocol.clone()))) {
                continue;
            }
            let ip = p.host_ip.as_deref().and_then(|s| s.parse().ok());
            let proto = if p.protocol == "udp" {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            crate::net::reserve_range(ip, first, last, proto).map_err(|e| {
                anyhow!(e).context(format!(
                    "service {service:?} cannot publish port {}/{}",
                    p.target, p.protocol
                ))
            })?;
        }
    }
    Ok(())
}

/// The start of every container's `/etc/hosts`: localhost only. Other containers' names are
/// answered by the resolver at 127.0.0.11, scoped to the networks the asker shares (a hosts
/// file cannot be: it would give a peer's address on a network the reader is not on).
pub fn hosts_file<'a>(_recs: impl Iterator<Item = &'a ContainerRecord>) -> String {
    String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// The shared hosts file plus the container's own hostname line.
pub fn with_own(hosts: &str, rec: &ContainerRecord, gateway: Option<std::net::Ipv4Addr>) -> String {
    let own = match rec.networks.first() {
        Some(n) => {
            let v6 = n.ip6.map(|a| format!("{a}\t{}\n", rec.hostname));
            format!("{}\t{}\n{}", n.ip, rec.hostname, v6.unwrap_or_default())
        }
        None => String::new(),
    };
    format!("{hosts}{own}{}", rec.host.extra_hosts_lines(gateway))
}

/// The host's resolv.conf: `BERTH_RESOLV_CONF` names another file (tests point it at a fake
/// upstream).
pub fn host_resolv_conf() -> String {
    let path = std::env::var_os("BERTH_RESOLV_CONF").unwrap_or_else(|| "/etc/resolv.conf".into());
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A container's `/etc/resolv.conf` (our resolver at 127.0.0.11) and what its resolver
/// forwards to: compose `dns:` or the host's resolvers (asked from the host's namespace, so
/// loopback ones work too), nothing when every network of the container is internal.
pub fn resolv_conf(
    svc: &crate::compose::Service,
    networks: &BTreeMap<String, crate::net::BridgeNetwork>,
    host: &str,
) -> Result<(String, crate::net::dns::DnsConfig)> {
    use crate::net::dns;
    if svc.networks.is_empty() {
        let mode = svc.network_mode.as_deref().unwrap_or("none");
        if mode.starts_with("service:") || mode.starts_with("container:") {
            // The other container's resolver answers in the namespace they share.
            return Ok((
                dns::container_resolv_conf(&svc.dns_search, &svc.dns_opt),
                dns::DnsConfig::default(),
            ));
        }
        // The host's own resolvers: as they are in the host's namespace, without the
        // loopback ones in a namespace of its own.
        let text = host
            .lines()
            .filter(|l| {
                mode == "host"
                    || !dns::nameservers(l)
                        .first()
                        .is_some_and(|a| a.ip().is_loopback())
            })
            .map(|l| format!("{l}\n"))
            .collect();
        return Ok((text, dns::DnsConfig::default()));
    }
    let upstreams = if svc.dns.is_empty() {
        dns::nameservers(host)
    } else {
        svc.dns
            .iter()
            .map(|s| {
                s.parse::<std::net::IpAddr>()
                    .map(|ip| std::net::SocketAddr::new(ip, 53))
                    .map_err(|_| anyhow!("service {:?}: dns {s:?} is not an IP address", svc.name))
            })
            .collect::<Result<_>>()?
    };
    let forward = svc
        .networks
        .keys()
        .any(|k| networks.get(k).is_some_and(|n| !n.internal));
    let search = if svc.dns_search.is_empty() {
        dns::search_domains(host)
    } else {
        svc.dns_search.clone()
    };
    Ok((
        dns::container_resolv_conf(&search, &svc.dns_opt),
        dns::DnsConfig { upstreams, forward },
    ))
}

/// Directories of the project's bind mounts that do not exist are created, as docker does,
/// unless the bind says `create_host_path: false`: then a missing source is an error.
pub fn create_bind_sources(project: &Project) -> Result<()> {
    project
        .services
        .values()
        .try_for_each(create_service_bind_sources)
}

/// [`create_bind_sources`] for one service.
pub fn create_service_bind_sources(svc: &crate::compose::Service) -> Result<()> {
    for v in &svc.volumes {
        if v.kind == VolumeType::Bind
            && let Some(src) = &v.source
        {
            let p = PathBuf::from(src);
            let create = v.bind.as_ref().is_none_or(|b| b.create_host_path);
            if !create && !p.exists() {
                anyhow::bail!(
                    "service {:?}: bind source path {} does not exist\n\
                     hint: create it, or drop `create_host_path: false` to have it created",
                    svc.name,
                    p.display()
                );
            }
            if !p.exists() {
                crate::sys::fsat::create_dirs_with_mode(&p, 0o755).with_context(|| {
                    format!(
                        "service {:?}: cannot create bind mount source {}",
                        svc.name,
                        p.display()
                    )
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{DependsOn, Service};

    fn project(edges: &[(&str, &str, bool)]) -> Project {
        let mut services = BTreeMap::new();
        for name in ["db", "app", "other"] {
            let mut s = Service {
                name: name.into(),
                ..Default::default()
            };
            for (from, to, restart) in edges {
                if *from == name {
                    s.depends_on.insert(
                        to.to_string(),
                        DependsOn {
                            condition: "service_started".into(),
                            required: true,
                            restart: *restart,
                        },
                    );
                }
            }
            services.insert(name.to_string(), s);
        }
        Project {
            name: "p".into(),
            services,
            ..Default::default()
        }
    }

    fn keep(service: &str) -> Action {
        Action::Keep {
            service: service.into(),
            container: format!("p-{service}-1"),
        }
    }

    #[test]
    fn a_recreated_dependency_restarts_only_dependents_that_ask_for_it() {
        let p = project(&[("app", "db", true), ("other", "db", false)]);
        let mut actions = vec![
            Action::Recreate {
                service: "db".into(),
                container: "p-db-1".into(),
                number: 1,
            },
            keep("app"),
            keep("other"),
        ];
        restart_dependents(&p, &mut actions);
        assert_eq!(
            actions[1],
            Action::Start {
                service: "app".into(),
                container: "p-app-1".into()
            }
        );
        assert_eq!(actions[2], keep("other"));
    }

    #[test]
    fn a_kept_dependency_restarts_nothing() {
        let p = project(&[("app", "db", true)]);
        let mut actions = vec![keep("db"), keep("app")];
        restart_dependents(&p, &mut actions);
        assert_eq!(actions, [keep("db"), keep("app")]);
    }
}
