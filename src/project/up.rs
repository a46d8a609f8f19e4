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
) -> Vec<Action> {
    let (scale, remove_orphans) = (&opts.scale, opts.remove_orphans);
    let mut actions = Vec::new();
    for (name, svc) in &project.services {
        if !opts.services.is_empty() && !opts.services.contains(name) {
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
                    let same = match opts.recreate {
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

/// Containers of the project whose service is no longer in the compose file.
pub fn orphans<'a>(
    project: &Project,
    existing: &'a [(ContainerRecord, Status)],
) -> Vec<&'a (ContainerRecord, Status)> {
    existing
        .iter()
        .filter(|(c, _)| {
            !is_oneoff(c)
                && c.service()
                    .is_some_and(|s| !project.services.contains_key(s))
        })
        .collect()
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
    /// `--force-recreate` / `--no-recreate`.
    pub recreate: Recreate,
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
            todo.extend(svc.depends_on.keys().cloned());
        }
    }
    Ok(out)
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
    let mut actions = plan(paths, project, &images, &existing, opts);
    if !opts.no_start {
        restart_dependents(project, &mut actions);
    }
    let left = orphans(project, &existing);
    if !opts.remove_orphans && !left.is_empty() && std::env::var("COMPOSE_IGNORE_ORPHANS").is_err()
    {
        let names: Vec<&str> = left.iter().map(|(c, _)| c.name.as_str()).collect();
        tracing::warn!(
            "found orphan containers ({}) for this project; if you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up",
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
    let (volume_dirs, networks) = ensure_resources(paths, &host, project, progress).await?;
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
    for a in &actions {
        if let Action::Start { container, .. } = a
            && let Some((c, Status::Running)) = existing.iter().find(|(c, _)| &c.name == container)
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
            super::down::remove_container(paths, &host, c, opts.timeout).await?;
            progress.event("Container", &c.name, "Removed");
        }
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
                let rec = record(project, svc, *number, &images[service], &volume_dirs)?;
                if shares_other_netns(svc) {
                    shared_ns.push(rec);
                } else {
                    own_ns.push(rec);
                }
            }
        }
    }
    let kept = all.clone();
    let made = super::par::map(&own_ns, super::par::PREPARE_LIMIT, |rec| -> Result<_> {
        let svc = &project.services[rec.service().unwrap_or_default()];
        let mut rec = rec.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut later = Vec::new();
        rt.block_on(materialize(
            paths, &host, project, &mut rec, svc, &networks, &kept, &mut later,
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
        materialize(
            paths,
            &host,
            project,
            &mut rec,
            svc,
            &networks,
            &all,
            &mut share_later,
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
            progress.event("Container", &rec.name, "Created");
            Ok(())
        },
    );
    prepared.into_iter().collect::<Result<Vec<()>>>()?;
    for (name, rec) in &all {
        if !fresh.contains(name) {
            // Running containers see the new peers at once: the file is bind-mounted.
            let _ = runtime::write_file(
                &rec.dir(paths).join("hosts"),
                &with_own(&hosts, rec, gateway(rec)),
            );
        }
    }

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
    for (key, vol) in &project.volumes {
        let host_name = vol
            .name
            .clone()
            .unwrap_or_else(|| format!("{}_{key}", project.name));
        let mut l = vol.labels.clone();
        if !vol.external {
            l.insert(labels::PROJECT.into(), project.name.clone());
            l.insert(labels::VOLUME.into(), key.clone());
        }
        let (dir, created) = volume::ensure(paths, &host_name, &l)?;
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
        let mut l = net.labels.clone();
        l.insert(labels::PROJECT.into(), project.name.clone());
        l.insert(labels::NETWORK.into(), key.clone());
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
/// is queued in `share_later`.
#[allow(clippy::too_many_arguments)]
pub async fn materialize(
    paths: &Paths,
    host: &crate::net::NetHost,
    project: &Project,
    rec: &mut ContainerRecord,
    svc: &crate::compose::Service,
    networks: &BTreeMap<String, crate::net::BridgeNetwork>,
    created: &BTreeMap<String, ContainerRecord>,
    share_later: &mut Vec<(PathBuf, String, anyhow::Error)>,
) -> Result<()> {
    let service = &svc.name;
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
        });
    }
    rec.save(paths)?;
    let netns = paths.netns(&rec.id);
    match shared_netns(paths, project, svc, created) {
        Ok(Some(source)) => crate::net::netns::share_netns(&netns, &source)?,
        Ok(None) => crate::net::create_netns(&netns)?,
        Err(e) => share_later.push((netns.clone(), service.clone(), e)),
    }
    for (i, att) in rec.networks.iter().enumerate() {
        let n = networks
            .values()
            .find(|n| n.name == att.network)
            .ok_or_else(|| anyhow!("network {} vanished", att.network))?;
        let sn = svc.networks.values().nth(i);
        let mac = sn
            .and_then(|sn| sn.mac_address.as_deref())
            .or(if i == 0 {
                svc.mac_address.as_deref()
            } else {
                None
            })
            .map(|m| {
                parse_mac(m).with_context(|| {
                    format!("service {service:?}: mac_address {m:?} is not a MAC address")
                })
            })
            .transpose()?;
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

/// Directories of the project's bind mounts that do not exist are created, as docker does.
pub fn create_bind_sources(project: &Project) -> Result<()> {
    for svc in project.services.values() {
        for v in &svc.volumes {
            if v.kind == VolumeType::Bind
                && let Some(src) = &v.source
            {
                let p = PathBuf::from(src);
                if !p.exists() {
                    std::fs::create_dir_all(&p).with_context(|| {
                        format!(
                            "service {:?}: cannot create bind mount source {}",
                            svc.name,
                            p.display()
                        )
                    })?;
                }
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
