//! Starting a project's containers: each service starts the moment its `depends_on` conditions
//! hold (`service_started`, `service_healthy`, `service_completed_successfully`), independent
//! services in parallel. One thread per service waits on a shared board of outcomes.
use super::Progress;
use crate::compose::Project;
use crate::engine::container::{ContainerRecord, HealthStatus, Status, load_state};
use crate::state::Paths;
use anyhow::{Result, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Started,
    Failed(String),
}

/// Outcomes of the services started (or found running) in this run.
#[derive(Default)]
struct Board {
    outcomes: Mutex<BTreeMap<String, Outcome>>,
    changed: Condvar,
}

impl Board {
    fn set(&self, service: &str, o: Outcome) {
        if let Ok(mut m) = self.outcomes.lock() {
            m.insert(service.to_string(), o);
        }
        self.changed.notify_all();
    }

    fn wait(&self, service: &str) -> Outcome {
        let Ok(mut m) = self.outcomes.lock() else {
            return Outcome::Failed("internal lock poisoned".into());
        };
        loop {
            if let Some(o) = m.get(service) {
                return o.clone();
            }
            m = match self.changed.wait(m) {
                Ok(m) => m,
                Err(_) => return Outcome::Failed("internal lock poisoned".into()),
            };
        }
    }
}

/// Starts the containers named in `to_start` (`containers` is keyed by container name);
/// the others count as started already.
/// `start_one` starts one container (spawn the shim, publish its ports).
pub fn start_all(
    paths: &Paths,
    project: &Project,
    containers: &BTreeMap<String, ContainerRecord>,
    to_start: &BTreeSet<String>,
    progress: &dyn Progress,
    start_one: &(dyn Fn(&ContainerRecord) -> Result<()> + Sync),
) -> Result<()> {
    start_all_created(
        paths,
        project,
        containers,
        to_start,
        progress,
        &|_| Ok(()),
        &|rec, ()| start_one(rec),
    )
}

/// [`start_all`] in two steps per container: `create_one` right away, for every container at
/// once (docker compose also creates every container before starting any), then `start_one`
/// with what it returned once the container's dependencies allow. Only that last, short step
/// is in a dependency chain's critical path.
pub fn start_all_created<C: Send>(
    paths: &Paths,
    project: &Project,
    containers: &BTreeMap<String, ContainerRecord>,
    to_start: &BTreeSet<String>,
    progress: &dyn Progress,
    create_one: &(dyn Fn(&ContainerRecord) -> Result<C> + Sync),
    start_one: &(dyn Fn(&ContainerRecord, C) -> Result<()> + Sync),
) -> Result<()> {
    let board = Board::default();
    for (name, rec) in containers {
        if !to_start.contains(name) {
            progress.event("Container", &rec.name, "Running");
            board.set(name, Outcome::Started);
        }
    }
    let results: Vec<(String, Result<()>)> = std::thread::scope(|s| {
        let handles: Vec<_> = to_start
            .iter()
            .filter_map(|name| containers.get(name).map(|rec| (name, rec)))
            .map(|(name, rec)| {
                let board = &board;
                let service = rec.service().unwrap_or_default();
                let h = s.spawn(move || -> Result<()> {
                    let wait = || {
                        wait_for_dependencies(paths, project, containers, board, service, progress)
                    };
                    let start = |created| {
                        progress.event("Container", &rec.name, "Starting");
                        start_one(rec, created)
                    };
                    // A container that joins another's pid or ipc namespace can only be
                    // created once that one runs (its spec names the donor's namespaces).
                    let r = if rec.host.pid_join.is_some() || rec.host.ipc_join.is_some() {
                        wait().and_then(|()| create_one(rec)).and_then(start)
                    } else {
                        create_one(rec).and_then(|created| wait().and_then(|()| start(created)))
                    };
                    match &r {
                        Ok(()) => {
                            progress.event("Container", &rec.name, "Started");
                            board.set(name, Outcome::Started);
                        }
                        Err(e) => {
                            progress.event("Container", &rec.name, "Error");
                            board.set(name, Outcome::Failed(format!("{e:#}")));
                        }
                    }
                    r
                });
                (name.clone(), h)
            })
            .collect();
        handles
            .into_iter()
            .map(|(service, h)| {
                (
                    service,
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a start thread panicked"))),
                )
            })
            .collect()
    });
    // Report the root cause: the first failure that is not just a failed dependency.
    let mut failures: Vec<(String, anyhow::Error)> = results
        .into_iter()
        .filter_map(|(s, r)| r.err().map(|e| (s, e)))
        .collect();
    failures.sort_by_key(|(_, e)| e.to_string().starts_with("dependency failed"));
    match failures.into_iter().next() {
        None => Ok(()),
        Some((_, e)) => Err(e),
    }
}

fn wait_for_dependencies(
    paths: &Paths,
    project: &Project,
    containers: &BTreeMap<String, ContainerRecord>,
    board: &Board,
    service: &str,
    progress: &dyn Progress,
) -> Result<()> {
    let Some(svc) = project.services.get(service) else {
        return Ok(());
    };
    for (dep, cond) in &svc.depends_on {
        let replicas: Vec<&ContainerRecord> = containers
            .values()
            .filter(|c| c.service() == Some(dep.as_str()))
            .collect();
        if replicas.is_empty() && cond.required {
            bail!("service {service:?} depends on {dep:?}, which is not part of this up");
        }
        for dep_rec in replicas {
            wait_for(paths, board, dep, dep_rec, &cond.condition, progress)?;
        }
    }
    Ok(())
}

fn wait_for(
    paths: &Paths,
    board: &Board,
    dep: &str,
    dep_rec: &ContainerRecord,
    condition: &str,
    progress: &dyn Progress,
) -> Result<()> {
    {
        if let Outcome::Failed(why) = board.wait(&dep_rec.name) {
            bail!("dependency failed to start: service {dep:?}: {why}");
        }
        match condition {
            "service_healthy" => {
                progress.event("Container", &dep_rec.name, "Waiting");
                wait_healthy(paths, dep_rec)
                    .map_err(|e| anyhow!("dependency failed to start: {e}"))?;
                progress.event("Container", &dep_rec.name, "Healthy");
            }
            "service_completed_successfully" => {
                progress.event("Container", &dep_rec.name, "Waiting");
                wait_completed(paths, dep_rec)?;
                progress.event("Container", &dep_rec.name, "Exited");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Polls the shim's state until `done` says yes or no; the shim writes it on every change.
fn watch_state<T>(
    paths: &Paths,
    rec: &ContainerRecord,
    timeout: Option<Duration>,
    mut done: impl FnMut(&crate::engine::container::State) -> Option<Result<T>>,
) -> Result<T> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut pause = Duration::from_millis(5);
    loop {
        let st = load_state(paths, &rec.id)?;
        if let Some(r) = done(&st) {
            return r;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            bail!("timed out waiting for container {}", rec.name);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Waits until the container is healthy; fails when it is unhealthy, exits, or has no check.
pub fn wait_healthy(paths: &Paths, rec: &ContainerRecord) -> Result<()> {
    if rec.supervision.healthcheck.is_none() {
        // As docker compose, whose first look comes after 500 ms: a container that exited by
        // then is reported as such (the likelier root cause), else the missing healthcheck.
        let exited = watch_state(paths, rec, Some(Duration::from_millis(500)), |st| {
            (st.status == Status::Exited).then(|| Ok(st.exit_code.unwrap_or(0)))
        });
        if let Ok(code) = exited {
            bail!("container {} exited ({code})", rec.name);
        }
        bail!(
            "container {} has no healthcheck configured (needed by depends_on condition service_healthy)",
            rec.name
        );
    }
    watch_state(paths, rec, None, |st| {
        match (st.status, st.health.as_ref().map(|h| h.status)) {
            (_, Some(HealthStatus::Healthy)) => Some(Ok(())),
            (_, Some(HealthStatus::Unhealthy)) => {
                Some(Err(anyhow!("container {} is unhealthy", rec.name)))
            }
            (Status::Exited, _) if st.restart_count == 0 && !restarts(rec) => Some(Err(anyhow!(
                "container {} exited ({})",
                rec.name,
                st.exit_code.unwrap_or(0)
            ))),
            _ => None,
        }
    })
}

fn restarts(rec: &ContainerRecord) -> bool {
    rec.supervision.restart != crate::engine::container::RestartPolicy::No
}

/// Waits until the container exits 0; fails on another exit code.
pub fn wait_completed(paths: &Paths, rec: &ContainerRecord) -> Result<()> {
    watch_state(paths, rec, None, |st| match (st.status, st.exit_code) {
        (Status::Exited, Some(0)) => Some(Ok(())),
        (Status::Exited, Some(c)) => Some(Err(anyhow!(
            "service {:?} didn't complete successfully: exit {c}",
            rec.service().unwrap_or(&rec.name)
        ))),
        _ => None,
    })
}

/// `up --wait`: every container running (and healthy where it has a healthcheck), or exited 0
/// for one-shot services; the first failure with its reason.
pub fn wait_ready(
    paths: &Paths,
    recs: &[&ContainerRecord],
    timeout: Option<Duration>,
) -> Result<()> {
    for rec in recs {
        let has_check = rec.supervision.healthcheck.is_some();
        watch_state(paths, rec, timeout, |st| match st.status {
            Status::Exited if st.exit_code == Some(0) => Some(Ok(())),
            Status::Exited => Some(Err(anyhow!(
                "container {} exited ({})",
                rec.name,
                st.exit_code.unwrap_or(0)
            ))),
            Status::Running if !has_check => Some(Ok(())),
            Status::Running => match st.health.as_ref().map(|h| h.status) {
                Some(HealthStatus::Healthy) => Some(Ok(())),
                Some(HealthStatus::Unhealthy) => {
                    Some(Err(anyhow!("container {} is unhealthy", rec.name)))
                }
                _ => None,
            },
            Status::Created => None,
        })?;
    }
    Ok(())
}
