//! Container lifecycle commands on a project's services, as docker compose has them: `stop`,
//! `start`, `restart`, `kill`, `rm`, `pause`, `unpause`, `top`, `cp`, `inspect`.
//!
//! Each command takes the project lock when it changes something, selects the project's
//! containers (of the named services, or all), and acts on each through the engine.
use super::Global;
use super::output;
use super::project::{project_name, runtime};
use crate::engine::container::{ContainerRecord, Status, labels};
use crate::engine::{control, copy, runtime as rt};
use crate::project;
use crate::state::Paths;
use anyhow::{Context, Result, anyhow, bail};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Specify a shutdown timeout in seconds.
    #[arg(short, long)]
    pub timeout: Option<u64>,
    pub services: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ServicesArgs {
    pub services: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Format the output using a Go template (the JSON array by default).
    #[arg(short, long)]
    pub format: Option<String>,
    /// Services of the project, or container names or ids (as `docker inspect` takes them).
    pub services: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// SIGNAL to send to the container.
    #[arg(short, long, default_value = "SIGKILL")]
    pub signal: String,
    pub services: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Don't ask to confirm removal.
    #[arg(short, long)]
    pub force: bool,
    /// Stop the containers, if required, before removing.
    #[arg(short, long)]
    pub stop: bool,
    /// Remove any anonymous volumes attached to containers.
    #[arg(short, long)]
    pub volumes: bool,
    pub services: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// Index of the container if the service has multiple replicas (0: into every replica,
    /// out of the first).
    #[arg(long, default_value_t = 0)]
    pub index: u32,
    /// Include containers created by the run command.
    #[arg(long)]
    pub all: bool,
    /// Archive mode (copy all uid/gid information).
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH.
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// SERVICE:SRC_PATH or a host path.
    pub src: String,
    /// SERVICE:DEST_PATH or a host path.
    pub dest: String,
}

/// The project's containers of `services` (all when empty). A service is unknown (an error)
/// when no container has it and the compose file, if there is one, does not name it either;
/// a service of the file without containers selects nothing, as with docker compose.
fn select(
    paths: &Paths,
    g: &Global,
    project: &str,
    services: &[String],
) -> Result<Vec<ContainerRecord>> {
    let recs = project::containers(paths, project)?;
    let missing: Vec<&String> = services
        .iter()
        .filter(|s| !recs.iter().any(|r| r.service() == Some(s.as_str())))
        .collect();
    if !missing.is_empty() {
        let file = super::project::load_without_env_files(g)
            .ok()
            .filter(|p| p.name == project);
        if let Some(s) = missing.iter().find(|s| {
            !file.as_ref().is_some_and(|p| {
                p.services.contains_key(s.as_str()) || p.disabled_services.contains_key(s.as_str())
            })
        }) {
            bail!("no such service: {s}");
        }
    }
    Ok(recs
        .into_iter()
        .filter(|r| {
            services.is_empty() || r.service().is_some_and(|s| services.iter().any(|x| x == s))
        })
        .collect())
}

/// Without the one-off (`run`) containers: `stop`, `start`, `restart`, `pause`, `unpause` and
/// `rm` leave them alone, as docker compose does (`kill`, `top` and `down --remove-orphans`
/// reach them).
fn not_oneoff(recs: Vec<ContainerRecord>) -> Vec<ContainerRecord> {
    recs.into_iter()
        .filter(|r| !project::up::is_oneoff(r))
        .collect()
}

/// Runs `f` on every container at once; the first error after all have finished.
fn each(recs: &[ContainerRecord], f: impl Fn(&ContainerRecord) -> Result<()> + Sync) -> Result<()> {
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = recs.iter().map(|r| s.spawn(|| f(r))).collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a worker thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

fn running(paths: &Paths, rec: &ContainerRecord) -> bool {
    rec.state(paths).is_ok_and(|s| s.status == Status::Running)
}

pub fn stop(paths: &Paths, g: &Global, a: &StopArgs) -> Result<i32> {
    let name = project_name(g)?;
    let _lock = project::lock(paths, &name)?;
    let recs = not_oneoff(select(paths, g, &name, &a.services)?);
    stop_all(paths, &recs, a.timeout.map(Duration::from_secs))?;
    Ok(0)
}

fn stop_all(paths: &Paths, recs: &[ContainerRecord], timeout: Option<Duration>) -> Result<()> {
    each(recs, |rec| {
        output::reporter().event("Container", &rec.name, "Stopping");
        rt::stop(paths, rec, rt::grace(rec, timeout))?;
        output::reporter().event("Container", &rec.name, "Stopped");
        Ok(())
    })
}

pub fn start(paths: &Paths, g: &Global, a: &ServicesArgs) -> Result<i32> {
    let name = project_name(g)?;
    let _lock = project::lock(paths, &name)?;
    let mut recs = not_oneoff(select(paths, g, &name, &a.services)?);
    if !a.services.is_empty() {
        recs = with_dependencies(project::containers(paths, &name)?, recs);
    }
    start_all(paths, &recs)?;
    Ok(0)
}

/// `start SERVICE` also starts what SERVICE depends on (transitively), as docker compose does;
/// read from the `depends_on` labels.
fn with_dependencies(
    all: Vec<ContainerRecord>,
    mut selected: Vec<ContainerRecord>,
) -> Vec<ContainerRecord> {
    loop {
        let wanted: Vec<String> = selected
            .iter()
            .flat_map(|r| label_deps(r).into_iter().map(|(d, _)| d))
            .collect();
        let more: Vec<ContainerRecord> = all
            .iter()
            .filter(|r| !selected.iter().any(|s| s.id == r.id))
            .filter(|r| !project::up::is_oneoff(r))
            .filter(|r| r.service().is_some_and(|s| wanted.iter().any(|w| w == s)))
            .cloned()
            .collect();
        if more.is_empty() {
            return selected;
        }
        selected.extend(more);
    }
}

/// Starts the stopped containers again, dependencies first (their netns and rootfs are still
/// there); their published ports move to whatever the new shim bound.
fn start_all(paths: &Paths, recs: &[ContainerRecord]) -> Result<()> {
    let host = project::net_host(paths);
    for rec in order(recs) {
        let st = rec.state(paths)?;
        if st.status == Status::Running {
            continue;
        }
        output::reporter().event("Container", &rec.name, "Starting");
        let old = project::up::port_mappings(rec, &st.ports);
        if !old.is_empty() {
            host.unpublish(&old)?;
        }
        let ready = rt::start(paths, rec)?;
        let new = project::up::port_mappings(rec, &ready.ports);
        if !new.is_empty() {
            host.publish(&new)
                .with_context(|| format!("publishing the ports of {}", rec.name))?;
        }
        output::reporter().event("Container", &rec.name, "Started");
    }
    Ok(())
}

/// The dependencies a container's `depends_on` label names (`service:condition:restart,…`),
/// each with its `restart` flag.
fn label_deps(r: &ContainerRecord) -> Vec<(String, bool)> {
    r.label(labels::DEPENDS_ON)
        .unwrap_or_default()
        .split(',')
        .filter_map(|d| {
            let mut parts = d.split(':');
            let service = parts.next().filter(|s| !s.is_empty())?;
            Some((service.to_string(), parts.nth(1) == Some("true")))
        })
        .collect()
}

/// Dependencies (the `depends_on` label) before dependents.
fn order(recs: &[ContainerRecord]) -> Vec<&ContainerRecord> {
    let deps = |r: &ContainerRecord| -> Vec<String> {
        label_deps(r).into_iter().map(|(d, _)| d).collect()
    };
    let mut out: Vec<&ContainerRecord> = Vec::new();
    let mut left: Vec<&ContainerRecord> = recs.iter().collect();
    while !left.is_empty() {
        let (ready, wait): (Vec<_>, Vec<_>) = left.iter().partition(|r| {
            deps(r).iter().all(|d| {
                out.iter().any(|o| o.service() == Some(d))
                    || !left.iter().any(|l| l.service() == Some(d))
            })
        });
        if ready.is_empty() {
            // A cycle cannot come from a valid compose file; keep the rest in name order.
            out.extend(wait);
            break;
        }
        out.extend(ready);
        left = wait;
    }
    out
}

pub fn restart(paths: &Paths, g: &Global, a: &StopArgs) -> Result<i32> {
    let name = project_name(g)?;
    let _lock = project::lock(paths, &name)?;
    let mut recs = not_oneoff(select(paths, g, &name, &a.services)?);
    if !a.services.is_empty() {
        recs = with_restart_dependents(project::containers(paths, &name)?, recs);
    }
    stop_all(paths, &recs, a.timeout.map(Duration::from_secs))?;
    start_all(paths, &recs)?;
    for rec in &recs {
        crate::engine::events::emit(paths, rec, "restart", &[]);
    }
    Ok(0)
}

/// `depends_on: {X: {restart: true}}`: restarting X restarts the services that say so (and
/// theirs in turn), as docker compose does; read from the `depends_on` label
/// (`service:condition:restart,…`), so no compose file is needed.
fn with_restart_dependents(
    all: Vec<ContainerRecord>,
    mut selected: Vec<ContainerRecord>,
) -> Vec<ContainerRecord> {
    let restarts_with = |r: &ContainerRecord, dep: &str| {
        label_deps(r)
            .iter()
            .any(|(d, restart)| d == dep && *restart)
    };
    loop {
        let services: Vec<String> = selected
            .iter()
            .filter_map(|r| r.service().map(String::from))
            .collect();
        let more: Vec<ContainerRecord> = all
            .iter()
            .filter(|r| !selected.iter().any(|s| s.id == r.id))
            .filter(|r| !project::up::is_oneoff(r))
            .filter(|r| services.iter().any(|s| restarts_with(r, s)))
            .cloned()
            .collect();
        if more.is_empty() {
            return selected;
        }
        selected.extend(more);
    }
}

pub fn kill(paths: &Paths, g: &Global, a: &KillArgs) -> Result<i32> {
    let name = project_name(g)?;
    let sig = crate::engine::hostconfig::parse_signal(&a.signal)
        .ok_or_else(|| anyhow!("invalid signal {:?}", a.signal))?;
    let _lock = project::lock(paths, &name)?;
    let recs: Vec<ContainerRecord> = select(paths, g, &name, &a.services)?
        .into_iter()
        .filter(|r| running(paths, r))
        .collect();
    each(&recs, |rec| {
        output::reporter().event("Container", &rec.name, "Killing");
        control::kill(paths, rec, sig)?;
        output::reporter().event("Container", &rec.name, "Killed");
        Ok(())
    })?;
    Ok(0)
}

pub fn rm(paths: &Paths, g: &Global, a: &RmArgs) -> Result<i32> {
    let name = project_name(g)?;
    let _lock = project::lock(paths, &name)?;
    let recs = not_oneoff(select(paths, g, &name, &a.services)?);
    if a.stop {
        stop_all(paths, &recs, None)?;
    }
    let stopped: Vec<ContainerRecord> = recs.into_iter().filter(|r| !running(paths, r)).collect();
    if stopped.is_empty() {
        output::note("No stopped containers");
        return Ok(0);
    }
    if !a.force {
        let names: Vec<&str> = stopped.iter().map(|r| r.name.as_str()).collect();
        output::note(&format!("Going to remove {}", names.join(", ")));
        if !confirm("Are you sure? [yN] ")? {
            return Ok(0);
        }
    }
    let host = project::net_host(paths);
    let rt = runtime()?;
    for rec in &stopped {
        output::reporter().event("Container", &rec.name, "Removing");
        rt.block_on(project::down::remove_container(
            paths,
            &host,
            rec,
            Some(Duration::ZERO),
        ))?;
        if a.volumes {
            project::anonymous::remove(paths, rec)?;
        }
        output::reporter().event("Container", &rec.name, "Removed");
    }
    Ok(0)
}

fn confirm(prompt: &str) -> Result<bool> {
    use std::io::Write;
    let mut err = std::io::stderr();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub fn pause(paths: &Paths, g: &Global, a: &ServicesArgs, freeze: bool) -> Result<i32> {
    let name = project_name(g)?;
    let _lock = project::lock(paths, &name)?;
    let recs = not_oneoff(select(paths, g, &name, &a.services)?);
    let (doing, done) = if freeze {
        ("Pausing", "Paused")
    } else {
        ("Unpausing", "Unpaused")
    };
    each(&recs, |rec| {
        if freeze && !running(paths, rec) {
            return Ok(());
        }
        if !freeze && !control::paused(paths, &rec.id) {
            return Ok(());
        }
        output::reporter().event("Container", &rec.name, doing);
        if freeze {
            control::pause(paths, rec)?;
        } else {
            control::unpause(paths, rec)?;
        }
        output::reporter().event("Container", &rec.name, done);
        Ok(())
    })?;
    Ok(0)
}

/// `top`: each running container's processes, as `ps -ef` shows them on the host.
pub fn top(paths: &Paths, g: &Global, a: &ServicesArgs) -> Result<i32> {
    let name = project_name(g)?;
    let recs = select(paths, g, &name, &a.services)?;
    let ps = std::process::Command::new("ps")
        .arg("-ef")
        .output()
        .context("running ps -ef")?;
    let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
    let mut lines = ps.lines();
    let header = lines.next().unwrap_or_default();
    let rows: Vec<(&str, i32)> = lines
        .filter_map(|l| Some((l, l.split_whitespace().nth(1)?.parse().ok()?)))
        .collect();
    let mut first = true;
    for rec in recs.iter().filter(|r| running(paths, r)) {
        let pids = control::pids(paths, rec)?;
        if !first {
            output::data("");
        }
        first = false;
        output::data(&rec.name);
        output::data(header);
        for pid in pids {
            if let Some((l, _)) = rows.iter().find(|(_, p)| *p == pid) {
                output::data(l);
            }
        }
    }
    Ok(0)
}

/// `cp SERVICE:SRC DEST` or `cp SRC SERVICE:DEST`.
pub fn cp(paths: &Paths, g: &Global, a: &CpArgs) -> Result<i32> {
    let name = project_name(g)?;
    let side = |s: &str| -> Option<(String, String)> {
        let (svc, path) = s.split_once(':')?;
        (!svc.is_empty() && !svc.contains('/')).then(|| (svc.to_string(), path.to_string()))
    };
    // As docker compose: `--index N` the replica numbered N; otherwise the service's
    // containers (one-offs too with `--all`), by number: into every one, out of the first.
    let targets = |svc: &str| -> Result<Vec<ContainerRecord>> {
        let recs =
            super::project::replicas(select(paths, g, &name, &[svc.to_string()])?, a.index, a.all);
        if recs.is_empty() {
            if a.index > 0 {
                bail!("service {svc:?} is not running container #{}", a.index);
            }
            bail!("no container found for service {svc:?}");
        }
        Ok(recs)
    };
    let container = |svc: &str| -> Result<ContainerRecord> { Ok(targets(svc)?.swap_remove(0)) };
    let host = copy::host_root()?;
    match (side(&a.src), side(&a.dest)) {
        (Some((svc, src)), None) => {
            let rec = container(&svc)?;
            let root = copy::container_root(paths, &rec)?;
            // Out of a container: the caller's ids unless -a.
            let owner = if a.archive {
                copy::Owner::Keep
            } else {
                copy::Owner::Set(
                    nix::unistd::getuid().as_raw(),
                    nix::unistd::getgid().as_raw(),
                )
            };
            copy::copy(
                std::os::fd::AsFd::as_fd(&root),
                &abs(&src),
                std::os::fd::AsFd::as_fd(&host),
                &copy::host_path(&a.dest),
                owner,
                a.follow_link,
            )?;
            output::reporter().event(
                "Container",
                &rec.name,
                &format!("Copied {src} to {}", a.dest),
            );
        }
        (None, Some((svc, dst))) => {
            for rec in targets(&svc)? {
                let root = copy::container_root(paths, &rec)?;
                // Into a container: root's unless -a, as docker cp.
                let owner = if a.archive {
                    copy::Owner::Keep
                } else {
                    copy::Owner::Set(0, 0)
                };
                copy::copy(
                    std::os::fd::AsFd::as_fd(&host),
                    &copy::host_path(&a.src),
                    std::os::fd::AsFd::as_fd(&root),
                    &abs(&dst),
                    owner,
                    a.follow_link,
                )?;
                output::reporter().event(
                    "Container",
                    &rec.name,
                    &format!("Copied {} to {dst}", a.src),
                );
            }
        }
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source: SERVICE:PATH"),
    }
    Ok(0)
}

/// Container paths are relative to `/` (its working directory is not known here).
fn abs(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// `inspect`: a JSON array in the shape of `docker inspect`.
pub fn inspect(paths: &Paths, g: &Global, a: &InspectArgs) -> Result<i32> {
    // A service of this project first; else a container name or id (12 hex digits or more),
    // from any project, as `docker inspect` takes it.
    let all = crate::engine::container::list(paths)?;
    let project = project_name(g).ok();
    let mut recs = Vec::new();
    let mut services = Vec::new();
    for s in &a.services {
        let hex = s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let is_service = all
            .iter()
            .any(|r| r.project() == project.as_deref() && r.service() == Some(s.as_str()));
        match all
            .iter()
            .find(|r| r.name == *s || (hex && r.id.starts_with(s.as_str())))
        {
            Some(r) if !is_service => recs.push(r.clone()),
            _ => services.push(s.clone()),
        }
    }
    if !services.is_empty() || a.services.is_empty() {
        let name = match project {
            Some(p) => p,
            None => project_name(g)?,
        };
        recs.extend(select(paths, g, &name, &services)?);
    }
    let mut out = Vec::new();
    for rec in &recs {
        out.push(super::inspect::container(paths, rec)?);
    }
    if super::format::print_inspect(a.format.as_deref(), &out)? {
        return Ok(0);
    }
    output::data(&serde_json::to_string_pretty(&out)?);
    Ok(0)
}
