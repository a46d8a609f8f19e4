//! `run`: a one-off container for a service (docker compose's rules: dependencies started and
//! waited for, ports dropped unless `--service-ports`, restart policy cleared, `oneoff=True`).
use super::container::record;
use super::pull::{ImageOptions, ensure_images};
use super::up::{self, UpOptions};
use super::{Progress, net_host};
use crate::compose::{Project, ServicePort};
use crate::engine::container::{ContainerRecord, RestartPolicy, labels};
use crate::engine::image::ImageStore;
use crate::engine::runtime;
use anyhow::{Result, anyhow};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub service: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<(String, Option<String>)>,
    /// `--cap-add` / `--cap-drop`, added to the service's.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--pull`.
    pub pull: Option<super::pull::PullPolicy>,
    /// `--build`: build the images first.
    pub build: bool,
    /// `--remove-orphans`, for the dependencies' `up`.
    pub remove_orphans: bool,
    /// `--use-aliases`: the service name and its aliases resolve to the one-off too; without
    /// it only the container's own name does, as docker compose does.
    pub use_aliases: bool,
    pub name: Option<String>,
    pub no_deps: bool,
    pub service_ports: bool,
    /// `-p` short port specs.
    pub publish: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// `--init`: a reaper as process 1.
    pub init: bool,
    /// The container gets a pseudo-terminal (docker compose's default when stdin and stdout
    /// are terminals; `-T` disables it).
    pub tty: bool,
    /// Its stdin stays open (`-i`, the default): the caller's while attached, else a pipe
    /// that never ends, as a service's `stdin_open`.
    pub interactive: bool,
    /// The caller stays attached (not `-d`): with `tty` [`run`] hands back the terminal to
    /// relay; without, the caller's stdin becomes the container's when `interactive`.
    pub attach: bool,
    /// `--rm`.
    pub rm: bool,
    /// The window size (rows, columns) the terminal starts with.
    pub terminal_size: Option<(u16, u16)>,
    /// `-v` short volume specs.
    pub volumes: Vec<String>,
    pub labels: Vec<(String, String)>,
}

/// Creates and starts the one-off container; returns its record, and its terminal when the
/// caller relays one.
pub async fn run(
    paths: &crate::state::Paths,
    project: &Project,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Result<(ContainerRecord, Option<runtime::Terminal>)> {
    let base = project
        .services
        .get(&opts.service)
        .ok_or_else(|| anyhow!("no such service: {}", opts.service))?;

    // Dependencies first, through `up` (which waits for their own conditions).
    if !opts.no_deps {
        let mut deps = up::with_dependencies(project, std::slice::from_ref(&opts.service), false)?;
        deps.remove(&opts.service);
        if !deps.is_empty() {
            let up_opts = UpOptions {
                recreate: Default::default(),
                recreate_deps: Default::default(),
                named: Default::default(),
                no_start: false,
                timeout: None,
                wait: false,
                wait_timeout: None,
                scale: Default::default(),
                remove_orphans: opts.remove_orphans,
                dry_run: false,
                services: deps,
                renew_anon_volumes: false,
                confirm: up::never,
                pull: opts.pull,
                build: build_mode(opts),
            };
            up::up(paths, project, &up_opts, progress).await?;
        }
    }
    // The service's own image: `image:` or, for a built service, `<project>-<service>`,
    // pulled or built when missing, as `up` does.
    let store = ImageStore::open(&paths.images())?;
    let image_opts = ImageOptions {
        services: BTreeSet::from([opts.service.clone()]),
        pull: opts.pull,
        build: build_mode(opts),
    };
    let mut images = ensure_images(paths, project, &store, &image_opts, progress).await?;
    crate::sys::timing::mark("run images");
    let _lock = super::lock(paths, &project.name)?;
    // The one-off's own dependency conditions.
    if !opts.no_deps {
        let recs = super::containers(paths, &project.name)?;
        for (dep, cond) in &base.depends_on {
            for r in recs
                .iter()
                .filter(|r| r.service() == Some(dep.as_str()) && !up::is_oneoff(r))
            {
                match cond.condition.as_str() {
                    "service_healthy" => super::start::wait_healthy(paths, r)?,
                    "service_completed_successfully" => super::start::wait_completed(paths, r)?,
                    _ => {}
                }
            }
        }
    }

    let mut svc = base.clone();
    if let Some(e) = &opts.entrypoint {
        svc.entrypoint = Some(e.clone());
        // docker compose: --entrypoint without a command also clears the service's command.
        svc.command = opts.command.clone();
    } else if let Some(c) = &opts.command {
        svc.command = Some(c.clone());
    }
    for (k, v) in &opts.env {
        let v = v.clone().or_else(|| std::env::var(k).ok());
        if v.is_some() {
            svc.environment.insert(k.clone(), v);
        }
    }
    if opts.user.is_some() {
        svc.user = opts.user.clone();
    }
    svc.cap_add.extend(opts.cap_add.iter().cloned());
    svc.cap_drop.extend(opts.cap_drop.iter().cloned());
    if opts.workdir.is_some() {
        svc.working_dir = opts.workdir.clone();
    }
    if opts.init {
        svc.init = Some(true);
    }
    if !opts.service_ports {
        svc.ports.clear();
    }
    for p in &opts.publish {
        let ports: Vec<ServicePort> =
            crate::compose::model::parse_port(p).map_err(|e| anyhow!("-p {p}: {e}"))?;
        svc.ports.extend(ports);
    }
    for v in &opts.volumes {
        let mut vol = crate::compose::model::parse_volume(v).map_err(|e| anyhow!("-v {v}: {e}"))?;
        if vol.kind == crate::compose::VolumeType::Bind
            && let Some(src) = &vol.source
        {
            vol.source = Some(project.working_dir.join(src).to_string_lossy().into_owned());
        }
        svc.volumes.push(vol);
    }
    svc.restart = None;
    svc.container_name = None;
    // As docker compose: the run's own flags decide, whatever the service says.
    svc.tty = opts.tty;
    svc.stdin_open = opts.interactive;

    up::create_service_bind_sources(&svc)?;
    let image = images
        .remove(&opts.service)
        .ok_or_else(|| anyhow!("no image for service {}", opts.service))?;
    let host = net_host(paths);
    // No `volume rm`/`prune` until this container, which mounts them, is saved.
    let volumes_lock = crate::engine::volume::lock_for_use(paths)?;
    let (volume_dirs, networks) = up::ensure_resources(paths, &host, project, progress).await?;
    crate::sys::timing::mark("run resources");
    let mut rec = record(project, &svc, 1, &image, &volume_dirs)?;
    rec.name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-run-{}", project.name, svc.name, &rec.id[..12]));
    rec.labels.insert(labels::ONEOFF.into(), "True".into());
    rec.labels
        .insert("com.docker.compose.slug".into(), rec.id.clone());
    for (k, v) in &opts.labels {
        rec.labels.insert(k.clone(), v.clone());
    }
    rec.supervision.restart = RestartPolicy::No;
    // Detached, nobody is left to remove it: its shim has it done (attached, the CLI does).
    rec.host.auto_remove = opts.rm && !opts.attach;
    rec.host.volatile_rootfs = opts.rm;
    // A `--rm` one-off that could not be started goes at once, as docker's does.
    let started = async {
        let mut later = Vec::new();
        // Without a terminal to relay, the shim is spawned as soon as the container has a
        // directory: its start-up overlaps the network's set-up.
        let early_shim = !(opts.attach && opts.tty);
        let early_stdin = opts.attach && opts.interactive;
        let mut early = None;
        up::materialize_with(
            paths,
            &host,
            project,
            &mut rec,
            &svc,
            &networks,
            &Default::default(),
            &mut later,
            &mut |rec| {
                if early_shim && early.is_none() {
                    early = Some(runtime::spawn_early(paths, rec, early_stdin)?);
                }
                Ok(())
            },
        )
        .await?;
        crate::sys::timing::mark("run materialized");
        drop(volumes_lock);
        if let Some((_, _, e)) = later.pop() {
            return Err(e);
        }
        if !opts.use_aliases {
            for n in &mut rec.networks {
                n.aliases.clear();
            }
        }

        let mut peers: Vec<ContainerRecord> = super::containers(paths, &project.name)?
            .into_iter()
            .filter(|r| r.id != rec.id)
            .collect();
        peers.push(rec.clone());
        let hosts = up::hosts_file(peers.iter());
        let gateway = rec
            .networks
            .first()
            .and_then(|a| networks.values().find(|n| n.name == a.network))
            .map(|n| n.gateway);
        let (resolv, dns) = up::resolv_conf(&svc, &networks, &up::host_resolv_conf())?;
        crate::state::write_json(&rec.dir(paths).join("dns.json"), &dns)?;
        runtime::prepare(paths, &rec, &up::with_own(&hosts, &rec, gateway), &resolv)?;
        crate::sys::timing::mark("run prepared");
        progress.event("Container", &rec.name, "Created");
        let (ready, terminal) = if opts.attach && opts.tty {
            let (ready, t) = runtime::start_with_terminal(paths, &rec, opts.terminal_size)?;
            (ready, Some(t))
        } else if let Some(early) = early {
            (early.start(paths, &rec)?, None)
        } else {
            let stdin = opts.attach && opts.interactive;
            (runtime::start_with(paths, &rec, stdin)?, None)
        };
        crate::sys::timing::mark("run started");
        up::publish(&host, &rec, &ready.ports)?;
        Ok(terminal)
    }
    .await;
    match started {
        Ok(terminal) => Ok((rec, terminal)),
        Err(e) => {
            if opts.rm && rec.dir(paths).join("container.json").exists() {
                let removed = super::down::remove_container(
                    paths,
                    &host,
                    &rec,
                    Some(std::time::Duration::ZERO),
                )
                .await;
                if removed.is_ok() {
                    let _ = super::anonymous::remove(paths, &rec);
                }
            }
            Err(e)
        }
    }
}

fn build_mode(opts: &RunOptions) -> super::pull::BuildMode {
    if opts.build {
        super::pull::BuildMode::Always
    } else {
        super::pull::BuildMode::Missing
    }
}

/// A project for `berth run IMAGE`, outside any compose file: one service `run` on the
/// shared `berth_default` network (as Docker's default bridge).
pub fn standalone(image: &str, command: Option<Vec<String>>) -> Project {
    let mut svc = crate::compose::Service {
        name: "run".into(),
        image: Some(image.into()),
        command,
        ..Default::default()
    };
    svc.networks.insert("default".into(), Default::default());
    let mut p = Project {
        name: "berth".into(),
        working_dir: std::env::current_dir().unwrap_or_default(),
        ..Default::default()
    };
    p.services.insert("run".into(), svc);
    p.networks.insert(
        "default".into(),
        crate::compose::Network {
            name: Some("berth_default".into()),
            ..Default::default()
        },
    );
    p
}

/// Names of the services a run depends on (for messages).
pub fn dependencies(project: &Project, service: &str) -> BTreeSet<String> {
    let mut d = up::with_dependencies(project, &[service.to_string()], false).unwrap_or_default();
    d.remove(service);
    d
}
