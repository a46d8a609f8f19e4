//! Project commands: `up`, `down`, `ps`, `logs`.
use super::Global;
use super::output::{self, Plain};
use crate::compose::{LoadOptions, Project};
use crate::engine::container::{ContainerRecord, Status};
use crate::engine::logs;
use crate::project::Progress;
use crate::project::{self, down::DownOptions, up::UpOptions};
use crate::state::Paths;
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Detached mode: run containers in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Shutdown timeout in seconds (default: the service's stop_grace_period, else 10).
    #[arg(short, long)]
    pub timeout: Option<u64>,
    /// Wait for services to be running|healthy. Implies detached mode.
    #[arg(long)]
    pub wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy.
    #[arg(long)]
    pub wait_timeout: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Remove named volumes declared in the volumes section of the compose file.
    #[arg(short, long)]
    pub volumes: bool,
    /// Shutdown timeout in seconds (default: the service's stop_grace_period, else 10).
    #[arg(short, long)]
    pub timeout: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all stopped containers.
    #[arg(short, long)]
    pub all: bool,
    /// Only display IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Display services.
    #[arg(long)]
    pub services: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    pub follow: bool,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Produce monochrome output... and no prefix.
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Services to show (all by default).
    pub services: Vec<String>,
}

pub fn load_options(g: &Global) -> Result<LoadOptions> {
    Ok(LoadOptions {
        files: g.files.clone(),
        project_name: g.project_name.clone(),
        project_directory: g.project_directory.clone(),
        working_dir: std::env::current_dir().context("reading the current directory")?,
        env: std::env::vars().collect(),
        ..Default::default()
    })
}

fn load(g: &Global) -> Result<Project> {
    Ok(crate::compose::load(&load_options(g)?)?)
}

/// The project name: `-p`, else from the compose file.
pub(super) fn project_name(g: &Global) -> Result<String> {
    if let Some(p) = &g.project_name {
        return Ok(p.clone());
    }
    if let Ok(p) = std::env::var("COMPOSE_PROJECT_NAME")
        && !p.is_empty()
    {
        return Ok(p);
    }
    Ok(load(g)?.name)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn up(paths: &Paths, g: &Global, a: &UpArgs) -> Result<i32> {
    let project = load(g)?;
    let opts = UpOptions {
        timeout: a.timeout.map(Duration::from_secs),
        wait: a.wait,
        wait_timeout: a.wait_timeout.map(Duration::from_secs),
    };
    runtime()?.block_on(project::up::up(paths, &project, &opts, &Plain))?;
    if a.detach || a.wait {
        return Ok(0);
    }
    // Attached mode: follow the logs until every container has exited; Ctrl-C stops them.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let rt = runtime()?;
    std::thread::spawn(move || {
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    follow(paths, &project.name, &[], false, true, Some(&interrupted))?;
    if !interrupted.load(Ordering::SeqCst) {
        return Ok(0);
    }
    output::note("Gracefully stopping... (press Ctrl+C again to force)");
    let recs = project::containers(paths, &project.name)?;
    std::thread::scope(|s| {
        for rec in &recs {
            s.spawn(|| {
                let r = crate::engine::runtime::stop(
                    paths,
                    rec,
                    crate::engine::runtime::grace(rec, opts.timeout),
                );
                Plain.event(
                    "Container",
                    &rec.name,
                    if r.is_ok() { "Stopped" } else { "Error" },
                );
            });
        }
    });
    Ok(130)
}

pub fn down(paths: &Paths, g: &Global, a: &DownArgs) -> Result<i32> {
    let name = project_name(g)?;
    let opts = DownOptions {
        volumes: a.volumes,
        timeout: a.timeout.map(Duration::from_secs),
    };
    runtime()?.block_on(project::down::down(paths, &name, &opts, &Plain))?;
    Ok(0)
}

fn ports_text(rec: &ContainerRecord, bound: &[u16]) -> String {
    rec.ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ip = p.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string());
            let hp = bound.get(i).copied().unwrap_or(p.host_port);
            format!("{ip}:{hp}->{}/{}", p.container_port, p.protocol)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_text(st: &crate::engine::container::State) -> String {
    let since = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| human_duration(chrono::Utc::now().signed_duration_since(t)))
            .unwrap_or_default()
    };
    let health = st
        .health
        .as_ref()
        .map(|h| format!(" ({})", h.status.as_str()))
        .unwrap_or_default();
    match st.status {
        Status::Running => format!("Up {}{health}", since(&st.started_at)),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            st.exit_code.unwrap_or(0),
            since(&st.finished_at)
        ),
        Status::Created => "Created".into(),
    }
}

fn human_duration(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        _ => format!("{} hours", s / 3600),
    }
}

pub fn ps(paths: &Paths, g: &Global, a: &PsArgs) -> Result<i32> {
    let name = project_name(g)?;
    let mut rows = Vec::new();
    for rec in project::containers(paths, &name)? {
        let st = rec.state(paths)?;
        if !a.all && st.status != Status::Running {
            continue;
        }
        rows.push((rec, st));
    }
    if a.services {
        let mut s: Vec<&str> = rows.iter().filter_map(|(r, _)| r.service()).collect();
        s.dedup();
        s.iter().for_each(|s| output::data(s));
        return Ok(0);
    }
    if a.quiet {
        rows.iter().for_each(|(r, _)| output::data(&r.id));
        return Ok(0);
    }
    match a.format.as_str() {
        "json" => {
            for (rec, st) in &rows {
                let publishers: Vec<serde_json::Value> = rec
                    .ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        serde_json::json!({
                            "URL": p.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string()),
                            "TargetPort": p.container_port,
                            "PublishedPort": st.ports.get(i).copied().unwrap_or(p.host_port),
                            "Protocol": p.protocol,
                        })
                    })
                    .collect();
                let v = serde_json::json!({
                    "ID": rec.id,
                    "Name": rec.name,
                    "Image": rec.image,
                    "Command": rec.process.args.join(" "),
                    "Project": rec.project(),
                    "Service": rec.service(),
                    "Created": rec.created,
                    "State": st.status.as_str(),
                    "Status": status_text(st),
                    "Health": st.health.as_ref().map_or("", |h| h.status.as_str()),
                    "ExitCode": st.exit_code.unwrap_or(0),
                    "Publishers": publishers,
                    "Labels": rec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                });
                output::data(&v.to_string());
            }
        }
        "table" => {
            let mut table = vec![[
                "NAME".to_string(),
                "IMAGE".into(),
                "COMMAND".into(),
                "SERVICE".into(),
                "CREATED".into(),
                "STATUS".into(),
                "PORTS".into(),
            ]];
            for (rec, st) in &rows {
                let mut cmd = rec.process.args.join(" ");
                if cmd.chars().count() > 20 {
                    cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
                }
                let created = chrono::DateTime::parse_from_rfc3339(&rec.created)
                    .map(|t| {
                        format!(
                            "{} ago",
                            human_duration(chrono::Utc::now().signed_duration_since(t))
                        )
                    })
                    .unwrap_or_default();
                table.push([
                    rec.name.clone(),
                    rec.image.clone(),
                    format!("\"{cmd}\""),
                    rec.service().unwrap_or_default().to_string(),
                    created,
                    status_text(st),
                    ports_text(rec, &st.ports),
                ]);
            }
            let widths: Vec<usize> = (0..7)
                .map(|i| {
                    table
                        .iter()
                        .map(|r| r[i].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for r in &table {
                let line: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                output::data(line.join("   ").trim_end());
            }
        }
        f => bail!("unknown format {f:?}: use table or json"),
    }
    Ok(0)
}

pub fn logs(paths: &Paths, g: &Global, a: &LogsArgs) -> Result<i32> {
    let name = project_name(g)?;
    follow(paths, &name, &a.services, a.timestamps, a.follow, None)?;
    Ok(0)
}

/// Prints the logs of the project's containers (of `services`, or all), prefixed with the
/// container name; with `follow`, keeps going until every container has exited.
fn follow(
    paths: &Paths,
    project: &str,
    services: &[String],
    timestamps: bool,
    follow: bool,
    interrupted: Option<&AtomicBool>,
) -> Result<()> {
    let recs: Vec<ContainerRecord> = project::containers(paths, project)?
        .into_iter()
        .filter(|r| {
            services.is_empty() || r.service().is_some_and(|s| services.iter().any(|x| x == s))
        })
        .collect();
    if let Some(s) = services
        .iter()
        .find(|s| !recs.iter().any(|r| r.service() == Some(s.as_str())))
    {
        bail!("no such service: {s}");
    }
    let width = recs.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut offsets = vec![0u64; recs.len()];
    loop {
        let mut all_done = true;
        for (i, rec) in recs.iter().enumerate() {
            let running = rec.state(paths)?.status == Status::Running;
            let (records, off) = logs::read_from(&rec.dir(paths).join(logs::LOG_FILE), offsets[i])
                .with_context(|| format!("reading the logs of {}", rec.name))?;
            offsets[i] = off;
            for r in records {
                let text = r.log.strip_suffix('\n').unwrap_or(&r.log);
                let ts = if timestamps {
                    format!("{} ", r.time)
                } else {
                    String::new()
                };
                output::data(&format!("{:<width$}  | {ts}{text}", rec.name));
            }
            if running {
                all_done = false;
            }
        }
        if !follow || all_done || interrupted.is_some_and(|i| i.load(Ordering::SeqCst)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Detached mode: run the command in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Set environment variables.
    #[arg(short, long = "env", value_name = "KEY=VAL")]
    pub env: Vec<String>,
    /// Run the command as this user.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Path to workdir directory for this command.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Index of the container if the service has multiple replicas.
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// Disable pseudo-TTY allocation (berth does not allocate one yet, so this is the default).
    #[arg(short = 'T', long = "no-tty")]
    pub no_tty: bool,
    /// Give extended privileges to the process.
    #[arg(long)]
    pub privileged: bool,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// The container of `service` with replica number `index`.
pub(super) fn service_container(
    paths: &Paths,
    project: &str,
    service: &str,
    index: u32,
) -> Result<ContainerRecord> {
    let recs = project::containers(paths, project)?;
    if !recs.iter().any(|r| r.service() == Some(service)) {
        bail!("service {service:?} is not running");
    }
    recs.into_iter()
        .find(|r| {
            r.service() == Some(service)
                && r.label(crate::engine::container::labels::NUMBER) == Some(&index.to_string())
        })
        .with_context(|| format!("service {service:?} has no container with index {index}"))
}

pub fn exec(paths: &Paths, g: &Global, a: &ExecArgs) -> Result<i32> {
    use crate::engine::exec::{self, ExecSpec};
    let name = project_name(g)?;
    let rec = service_container(paths, &name, &a.service, a.index)?;
    let (uid, gid) = match &a.user {
        Some(u) => {
            let (uid, gid) = crate::project::container::resolve_user(u, &rec.layers)
                .map_err(|e| anyhow::anyhow!("service {:?}: {e}", a.service))?;
            (Some(uid), Some(gid))
        }
        None => (None, None),
    };
    let spec = ExecSpec {
        args: a.command.clone(),
        env: a
            .env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), std::env::var(e).unwrap_or_default()),
            })
            .collect(),
        cwd: a.workdir.clone(),
        uid,
        gid,
    };
    let stdio = if a.detach {
        let null = || -> Result<std::os::fd::OwnedFd> {
            Ok(std::fs::File::options()
                .read(true)
                .write(true)
                .open("/dev/null")?
                .into())
        };
        [null()?, null()?, null()?]
    } else {
        exec::own_stdio()?
    };
    let pid = match exec::spawn(paths, &rec, &spec, stdio) {
        Ok(pid) => pid,
        // As docker: 127 when the command is not found, 126 when it cannot be run.
        Err(e @ exec::ExecError::Failed { .. }) => {
            let code = if e.to_string().contains("not found") {
                127
            } else {
                126
            };
            output::error(&anyhow::Error::from(e));
            return Ok(code);
        }
        Err(e) => return Err(e.into()),
    };
    if a.detach {
        return Ok(0);
    }
    Ok(exec::wait(pid))
}
