//! Project commands: `up`, `down`, `ps`, `logs`.
use super::Global;
use super::output;
use crate::compose::{LoadOptions, Project};
use crate::engine::container::{ContainerRecord, Status};
use crate::engine::logs;
use crate::project::pull::{BuildMode, PullPolicy};
use crate::project::{self, down::DownOptions, up::UpOptions};
use crate::state::Paths;
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
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
    /// Pull images before running: always, missing, never (default: each service's pull_policy).
    #[arg(long, value_parser = ["always", "missing", "never"])]
    pub pull: Option<String>,
    /// Build images before starting containers.
    #[arg(long, conflicts_with = "no_build")]
    pub build: bool,
    /// Don't build an image, even if it's missing.
    #[arg(long)]
    pub no_build: bool,
    /// Scale SERVICE to NUM instances (overrides `scale` and `deploy.replicas`).
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Remove containers for services not defined in the Compose file.
    #[arg(long)]
    pub remove_orphans: bool,
    /// Execute command in dry run mode: print the plan, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Don't start linked services.
    #[arg(long)]
    pub no_deps: bool,
    /// Stops all containers if any container was stopped. Incompatible with -d.
    #[arg(long)]
    pub abort_on_container_exit: bool,
    /// Stops all containers if any container exited with failure. Incompatible with -d.
    #[arg(long)]
    pub abort_on_container_failure: bool,
    /// Return the exit code of the selected service container. Implies --abort-on-container-exit.
    #[arg(long, value_name = "SERVICE")]
    pub exit_code_from: Option<String>,
    /// Recreate containers even if their configuration and image haven't changed.
    #[arg(long, conflicts_with = "no_recreate")]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them.
    #[arg(long)]
    pub no_recreate: bool,
    /// Recreate dependent containers. Incompatible with --no-recreate.
    #[arg(long)]
    pub always_recreate_deps: bool,
    /// Recreate anonymous volumes instead of retrieving data from the previous containers.
    #[arg(short = 'V', long)]
    pub renew_anon_volumes: bool,
    /// Produce monochrome output.
    #[arg(long)]
    pub no_color: bool,
    /// Don't prefix the container's output with its name.
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Show timestamps.
    #[arg(long)]
    pub timestamps: bool,
    /// Restrict attaching to the specified services. Incompatible with --attach-dependencies.
    #[arg(long, value_name = "SERVICE")]
    pub attach: Vec<String>,
    /// Do not attach (stream logs) to the specified services.
    #[arg(long, value_name = "SERVICE")]
    pub no_attach: Vec<String>,
    /// Automatically attach to log output of dependent services.
    #[arg(long)]
    pub attach_dependencies: bool,
    /// Don't start the services after creating them.
    #[arg(long)]
    pub no_start: bool,
    /// Pull without printing progress information.
    #[arg(long)]
    pub quiet_pull: bool,
    /// Suppress the build output.
    #[arg(long)]
    pub quiet_build: bool,
    /// Enable interactive shortcuts when running attached (also COMPOSE_MENU; on by default on
    /// a terminal): `d` detaches.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub menu: Option<bool>,
    /// Assume "yes" as answer to all prompts and run non-interactively.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Services to start (and their dependencies); all by default.
    pub services: Vec<String>,
}

fn recreate_policy(force: bool, never: bool) -> project::up::Recreate {
    match (force, never) {
        (true, _) => project::up::Recreate::Force,
        (_, true) => project::up::Recreate::Never,
        _ => project::up::Recreate::Diverged,
    }
}

fn build_mode(build: bool, no_build: bool) -> BuildMode {
    if build {
        BuildMode::Always
    } else if no_build {
        BuildMode::Never
    } else {
        BuildMode::Missing
    }
}

fn pull_policy(pull: Option<&str>) -> Result<Option<PullPolicy>> {
    pull.map(PullPolicy::parse)
        .transpose()
        .map_err(anyhow::Error::msg)
}

/// `--remove-orphans`, or `COMPOSE_REMOVE_ORPHANS` from the environment (or, when a project is
/// loaded, its `.env`).
fn remove_orphans(flag: bool) -> bool {
    flag || project::up::truthy(std::env::var("COMPOSE_REMOVE_ORPHANS").ok().as_deref())
}

fn remove_orphans_in(flag: bool, project: &Project) -> bool {
    flag || project::up::truthy(
        project
            .environment
            .get("COMPOSE_REMOVE_ORPHANS")
            .map(String::as_str),
    )
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Build images before starting containers.
    #[arg(long, conflicts_with = "no_build")]
    pub build: bool,
    /// Don't build an image, even if it's missing.
    #[arg(long)]
    pub no_build: bool,
    /// Pull image before running: always, missing, never.
    #[arg(long, value_parser = ["always", "missing", "never"])]
    pub pull: Option<String>,
    /// Recreate containers even if their configuration and image haven't changed.
    #[arg(long, conflicts_with = "no_recreate")]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them.
    #[arg(long)]
    pub no_recreate: bool,
    /// Remove containers for services not defined in the Compose file.
    #[arg(long)]
    pub remove_orphans: bool,
    /// Scale SERVICE to NUM instances (overrides `scale` and `deploy.replicas`).
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Execute command in dry run mode: print the plan, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Pull without printing progress information.
    #[arg(long)]
    pub quiet_pull: bool,
    /// Assume "yes" as answer to all prompts and run non-interactively.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Services to create (and their dependencies); all by default.
    pub services: Vec<String>,
}

/// `create`: what `up` makes (images, networks, volumes, containers), nothing started; the
/// containers are `created` until a `start` or `up`.
pub fn create(paths: &Paths, g: &Global, a: &CreateArgs) -> Result<i32> {
    let mut project = load_enabling(g, &a.services)?;
    let services = project::up::with_dependencies(&project, &a.services, false)?;
    project::up::drop_unused_resources(&mut project, &services);
    let opts = UpOptions {
        recreate: recreate_policy(a.force_recreate, a.no_recreate),
        recreate_deps: recreate_policy(false, a.no_recreate),
        named: a.services.iter().cloned().collect(),
        no_start: true,
        timeout: None,
        wait: false,
        wait_timeout: None,
        pull: pull_policy(a.pull.as_deref())?,
        build: build_mode(a.build, a.no_build),
        scale: parse_scale(&a.scale)?,
        remove_orphans: remove_orphans_in(a.remove_orphans, &project),
        dry_run: a.dry_run,
        services,
        renew_anon_volumes: false,
        confirm: if a.yes { yes } else { ask },
    };
    let progress = project::Filtered {
        inner: output::progress(&g.progress),
        quiet_pull: a.quiet_pull,
        quiet_build: false,
    };
    runtime()?.block_on(project::up::up(paths, &project, &opts, &progress))?;
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// Don't start linked services.
    #[arg(long)]
    pub no_deps: bool,
    /// SERVICE=REPLICAS pairs.
    #[arg(value_name = "SERVICE=REPLICAS", required = true)]
    pub services: Vec<String>,
}

/// `scale web=3 db=1`: `up -d` of those services (and their dependencies, unless `--no-deps`)
/// with these replica counts, as docker compose does. Scaling down removes the highest
/// numbers; scaling up fills the lowest free ones.
pub fn scale(paths: &Paths, g: &Global, a: &ScaleArgs) -> Result<i32> {
    let mut replicas = std::collections::BTreeMap::new();
    for arg in &a.services {
        let (s, n) = match arg.split_once('=') {
            Some((s, n)) if !s.is_empty() && !n.is_empty() => (s, n),
            _ => bail!("invalid scale specifier: {arg}"),
        };
        let n: u32 = n.parse().map_err(|_| {
            anyhow::anyhow!("invalid scale specifier: can't parse replica value as int: {arg}")
        })?;
        replicas.insert(s.to_string(), n);
    }
    let names: Vec<String> = replicas.keys().cloned().collect();
    let mut project = load_enabling(g, &names)?;
    let services = project::up::with_dependencies(&project, &names, a.no_deps)?;
    if a.no_deps {
        project::up::drop_unselected_dependencies(&mut project, &services);
    }
    let opts = UpOptions {
        recreate: project::up::Recreate::Diverged,
        recreate_deps: project::up::Recreate::Diverged,
        named: names.iter().cloned().collect(),
        no_start: false,
        timeout: None,
        wait: false,
        wait_timeout: None,
        pull: None,
        build: BuildMode::Missing,
        scale: replicas,
        remove_orphans: false,
        dry_run: false,
        services,
        renew_anon_volumes: false,
        confirm: ask,
    };
    runtime()?.block_on(project::up::up(
        paths,
        &project,
        &opts,
        output::progress(&g.progress),
    ))?;
    Ok(0)
}

/// docker compose's prompt: the question, then a line from stdin; `y`, `yes`, `true` or `1`
/// is yes (an empty line or the end of input is no). On stderr, which is not data.
pub(super) fn ask(question: &str) -> bool {
    use std::io::Write;
    output::finish();
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let _ = writeln!(err);
    matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes" | "true" | "1"
    )
}

/// `-y`: yes to every question.
fn yes(_: &str) -> bool {
    true
}

/// `--scale web=3` → {"web": 3}.
fn parse_scale(items: &[String]) -> Result<std::collections::BTreeMap<String, u32>> {
    items
        .iter()
        .map(|i| {
            let (s, n) = i
                .split_once('=')
                .with_context(|| format!("invalid --scale {i:?}: use SERVICE=NUM"))?;
            let n: u32 = n
                .parse()
                .with_context(|| format!("invalid --scale {i:?}: NUM must be a number"))?;
            Ok((s.to_string(), n))
        })
        .collect()
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Remove named volumes declared in the volumes section of the compose file.
    #[arg(short, long)]
    pub volumes: bool,
    /// Shutdown timeout in seconds (default: the service's stop_grace_period, else 10).
    #[arg(short, long)]
    pub timeout: Option<u64>,
    /// Remove images used by services: "local" those without a custom tag, "all" every one.
    #[arg(long, value_parser = ["local", "all"])]
    pub rmi: Option<String>,
    /// Remove containers for services not defined in the Compose file.
    #[arg(long)]
    pub remove_orphans: bool,
    /// Services to take down, with those depending on them (all by default).
    pub services: Vec<String>,
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
    /// Filter by status: created, restarting, running, removing, paused, exited, dead.
    #[arg(long)]
    pub status: Vec<String>,
    /// Filter by a property (`status=running`, `service=web`).
    #[arg(long)]
    pub filter: Vec<String>,
    /// Services to list (all by default).
    #[arg(value_name = "SERVICE")]
    pub service_names: Vec<String>,
}

pub fn load_options(g: &Global) -> Result<LoadOptions> {
    Ok(LoadOptions {
        files: g.files.clone(),
        project_name: g.project_name.clone(),
        project_directory: g.project_directory.clone(),
        working_dir: std::env::current_dir().context("reading the current directory")?,
        env: std::env::vars().collect(),
        env_files: g.env_files.clone(),
        profiles: g.profiles.clone(),
        // git `include`s are checked out under the state root, not in the user's home.
        remote_cache: Some(
            crate::state::Paths::new(g.root.as_deref())
                .data
                .join("cache/git"),
        ),
        ..Default::default()
    })
}

/// The project as commands that only read it need it (its name, its services' images): the
/// services' env files are not read, so a missing one fails only the commands that make
/// containers from it (`up`, `create`, `run`), as with docker compose.
pub(super) fn load_without_env_files(g: &Global) -> Result<Project> {
    let mut opts = load_options(g)?;
    opts.no_env_resolution = true;
    Ok(crate::compose::load(&opts)?)
}

/// The project to make containers from (`up`, `create`, `run`), with the services named on the
/// command line enabled whatever their profiles.
fn load_enabling(g: &Global, services: &[String]) -> Result<Project> {
    let mut opts = load_options(g)?;
    opts.enabled_services = services.to_vec();
    opts.create_checks = true;
    Ok(crate::compose::load(&opts)?)
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
    Ok(load_without_env_files(g)?.name)
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn up(paths: &Paths, g: &Global, a: &UpArgs) -> Result<i32> {
    let mut project = load_enabling(g, &a.services)?;
    check_up_flags(a, &project)?;
    let services = project::up::with_dependencies(&project, &a.services, a.no_deps)?;
    if a.no_deps {
        project::up::drop_unselected_dependencies(&mut project, &services);
    }
    project::up::drop_unused_resources(&mut project, &services);
    let opts = UpOptions {
        // docker compose: `-V` recreates the containers (with new anonymous volumes).
        recreate: recreate_policy(a.force_recreate || a.renew_anon_volumes, a.no_recreate),
        recreate_deps: recreate_policy(a.always_recreate_deps, a.no_recreate),
        named: a.services.iter().cloned().collect(),
        no_start: a.no_start,
        timeout: a.timeout.map(Duration::from_secs),
        wait: a.wait,
        wait_timeout: a.wait_timeout.map(Duration::from_secs),
        pull: pull_policy(a.pull.as_deref())?,
        build: build_mode(a.build, a.no_build),
        scale: parse_scale(&a.scale)?,
        remove_orphans: remove_orphans_in(a.remove_orphans, &project),
        dry_run: a.dry_run,
        services,
        renew_anon_volumes: a.renew_anon_volumes,
        confirm: if a.yes { yes } else { ask },
    };
    // Checked before anything is made.
    let (attach, watch) = attached_services(a, &project, &opts.services)?;
    let progress = project::Filtered {
        inner: output::progress(&g.progress),
        quiet_pull: a.quiet_pull,
        quiet_build: a.quiet_build,
    };
    runtime()?.block_on(project::up::up(paths, &project, &opts, &progress))?;
    crate::engine::cgroups::cool();
    if a.detach || a.wait || a.no_start {
        return Ok(0);
    }
    // The containers' output follows: the live progress lines end here.
    output::finish();
    // Attached mode: follow the output until every container has exited; Ctrl-C stops them
    // (a second Ctrl-C kills berth itself, the default action once the handler is gone).
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let rt = runtime()?;
    // Registered now, before anything is attached (or the menu drawn): a Ctrl-C from here on
    // stops the project, none ends berth before the handler is in place.
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = rt
        .block_on(async { signal(SignalKind::interrupt()) })
        .context("handling Ctrl-C")?;
    std::thread::spawn(move || {
        if rt.block_on(sigint.recv()).is_some() {
            flag.store(true, Ordering::SeqCst);
            drop(rt);
        }
    });
    let color = match g.ansi.as_str() {
        _ if a.no_color => false,
        "always" => true,
        "never" => false,
        _ => console::Term::stdout().is_term() && std::env::var_os("NO_COLOR").is_none(),
    };
    let attach = super::attach::AttachOptions {
        abort_on_exit: a.abort_on_container_exit,
        abort_on_failure: a.abort_on_container_failure,
        exit_code_from: a.exit_code_from.clone(),
        timeout: opts.timeout,
        color,
        prefix: !a.no_log_prefix,
        timestamps: a.timestamps,
        attach: Some(attach),
        watch,
        menu: super::menu::wanted(a.menu, &g.progress),
        watch_configured: project
            .services
            .values()
            .any(|s| s.develop.as_ref().is_some_and(|d| !d.watch.is_empty())),
        stop: if a.services.is_empty() {
            BTreeSet::new()
        } else {
            let deps: std::collections::BTreeMap<String, Vec<String>> = project
                .services
                .iter()
                .map(|(k, s)| (k.clone(), s.depends_on.keys().cloned().collect()))
                .collect();
            project::down::with_dependents(&deps, &a.services)
        },
    };
    super::attach::attach(
        paths,
        &project.name,
        &attach,
        &interrupted,
        output::progress(&g.progress),
    )
}

/// Whose output attached `up` shows, and whose exits it waits for, as docker compose decides:
/// `--attach` names them (each must be part of this `up`); otherwise the services named to
/// `up` (all when none), with their dependencies under `--attach-dependencies`, except those
/// saying `attach: false`; then `--no-attach` takes some out. `up` returns once the services
/// named to it (else the attached ones; else all) have exited.
fn attached_services(
    a: &UpArgs,
    project: &Project,
    selected: &BTreeSet<String>,
) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let in_up = |s: &String| {
        project.services.contains_key(s) && (selected.is_empty() || selected.contains(s))
    };
    let mut attach: BTreeSet<String> = if !a.attach.is_empty() {
        let unknown: Vec<&str> = a
            .attach
            .iter()
            .filter(|s| !in_up(s))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            bail!(
                "cannot attach to services not included in up: {}",
                unknown.join(", ")
            );
        }
        a.attach.iter().cloned().collect()
    } else {
        let named: BTreeSet<String> = if a.services.is_empty() {
            project.services.keys().cloned().collect()
        } else if a.attach_dependencies {
            project::up::with_dependencies(project, &a.services, a.no_deps)?
        } else {
            a.services.iter().cloned().collect()
        };
        named
            .into_iter()
            .filter(|s| {
                project
                    .services
                    .get(s)
                    .is_some_and(|svc| svc.attach != Some(false))
            })
            .collect()
    };
    for s in &a.no_attach {
        attach.remove(s);
    }
    let watch = if a.services.is_empty() {
        attach.clone()
    } else {
        a.services.iter().cloned().collect()
    };
    Ok((attach, watch))
}

/// docker compose's flag rules for `up`.
fn check_up_flags(a: &UpArgs, project: &Project) -> Result<()> {
    if !a.attach.is_empty() && a.attach_dependencies {
        bail!("cannot combine --attach and --attach-dependencies");
    }
    if a.detach && (!a.attach.is_empty() || a.attach_dependencies) {
        bail!(
            "--detach cannot be combined with --abort-on-container-exit, --abort-on-container-failure, --attach, --attach-dependencies or --watch"
        );
    }
    if a.wait && (!a.attach.is_empty() || a.attach_dependencies) {
        bail!(
            "--wait cannot be combined with --abort-on-container-exit, --attach or --attach-dependencies"
        );
    }
    let abort =
        a.abort_on_container_exit || a.abort_on_container_failure || a.exit_code_from.is_some();
    if a.abort_on_container_exit && a.abort_on_container_failure {
        bail!("--abort-on-container-exit and --abort-on-container-failure cannot be combined");
    }
    if a.detach && abort {
        bail!(
            "-d cannot be combined with --abort-on-container-exit, --abort-on-container-failure or --exit-code-from"
        );
    }
    if a.wait && abort {
        bail!(
            "--wait cannot be combined with --abort-on-container-exit, --abort-on-container-failure or --exit-code-from"
        );
    }
    if project::up::ignore_orphans(project) && remove_orphans_in(a.remove_orphans, project) {
        bail!("cannot combine COMPOSE_IGNORE_ORPHANS and --remove-orphans");
    }
    if a.always_recreate_deps && a.no_recreate {
        bail!("--always-recreate-deps and --no-recreate are incompatible");
    }
    if a.renew_anon_volumes && a.no_recreate {
        bail!("--no-recreate and --renew-anon-volumes are incompatible");
    }
    if let Some(s) = &a.exit_code_from
        && !project.services.contains_key(s)
    {
        bail!("no such service: {s} (from --exit-code-from)");
    }
    Ok(())
}

pub fn down(paths: &Paths, g: &Global, a: &DownArgs) -> Result<i32> {
    let name = project_name(g)?;
    // `--rmi`: the images of the compose file's services when there is one, else those the
    // project's containers were made from (`-p NAME` alone).
    let images = match a.rmi.as_deref() {
        None => Vec::new(),
        Some(scope) => {
            let local = scope == "local";
            match load_without_env_files(g) {
                Ok(p) if p.name == name => project::down::service_images(&p, local),
                _ => project::down::container_images(paths, &name, local)?,
            }
        }
    };
    // As docker compose: the compose file is read unless only `-p` is given; with it, only
    // its services' containers go (orphans and one-offs with --remove-orphans).
    let file = if g.files.is_empty() && g.project_name.is_some() {
        None
    } else {
        load_without_env_files(g).ok().filter(|p| p.name == name)
    };
    let services = file.as_ref().map(|p| project::down::ProjectServices {
        enabled: p.services.keys().cloned().collect(),
        disabled: p.disabled_services.keys().cloned().collect(),
    });
    // `down SERVICE...`: with a compose file every name must be one of its services; without,
    // the names no container has are skipped (docker compose cannot tell a typo from a service
    // already gone).
    let mut only = std::collections::BTreeSet::new();
    if !a.services.is_empty() {
        let deps: std::collections::BTreeMap<String, Vec<String>> = match &file {
            Some(p) => p
                .services
                .iter()
                .map(|(k, s)| (k.clone(), s.depends_on.keys().cloned().collect()))
                .collect(),
            None => project::containers(paths, &name)?
                .iter()
                .filter_map(|c| {
                    let deps = c
                        .label(crate::engine::container::labels::DEPENDS_ON)
                        .unwrap_or_default()
                        .split(',')
                        .filter_map(|d| d.split(':').next())
                        .filter(|d| !d.is_empty())
                        .map(String::from)
                        .collect();
                    Some((c.service()?.to_string(), deps))
                })
                .collect(),
        };
        let mut named = Vec::new();
        for s in &a.services {
            if deps.contains_key(s) {
                named.push(s.clone());
            } else if file.is_some() {
                bail!("no such service: {s}");
            }
        }
        if named.is_empty() {
            output::note(&format!(
                "Any of the services {:?} not running in project {name:?}",
                a.services
            ));
            return Ok(0);
        }
        only = project::down::with_dependents(&deps, &named);
    }
    let opts = DownOptions {
        volumes: a.volumes,
        timeout: a.timeout.map(Duration::from_secs),
        images,
        remove_orphans: match &file {
            Some(p) => remove_orphans_in(a.remove_orphans, p),
            None => remove_orphans(a.remove_orphans),
        },
        services,
        only,
    };
    runtime()?.block_on(project::down::down(
        paths,
        &name,
        &opts,
        output::progress(&g.progress),
    ))?;
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

/// docker's `State`: `paused` for a running container `pause` froze.
fn state_name(
    paths: &Paths,
    rec: &ContainerRecord,
    st: &crate::engine::container::State,
) -> &'static str {
    if st.status == Status::Running && crate::engine::control::paused(paths, &rec.id) {
        "paused"
    } else {
        st.status.as_str()
    }
}

/// docker's `Status`, `Up 3 seconds (Paused)` for a paused container.
fn status_with_pause(
    paths: &Paths,
    rec: &ContainerRecord,
    st: &crate::engine::container::State,
) -> String {
    let text = status_text(st);
    if state_name(paths, rec, st) == "paused" {
        format!("{text} (Paused)")
    } else {
        text
    }
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
    let mut statuses: Vec<String> = a.status.clone();
    let mut services: Vec<String> = a.service_names.clone();
    for f in &a.filter {
        match f.split_once('=') {
            Some(("status", v)) => statuses.push(v.to_string()),
            Some(("service", v)) => services.push(v.to_string()),
            _ => bail!("invalid filter {f:?}: use status=STATUS or service=NAME"),
        }
    }
    for rec in project::containers(paths, &name)? {
        let st = rec.state(paths)?;
        let status = state_name(paths, &rec, &st);
        let shown = if statuses.is_empty() {
            a.all || st.status == Status::Running
        } else {
            statuses.iter().any(|s| s == status)
        };
        let service_ok =
            services.is_empty() || services.iter().any(|s| Some(s.as_str()) == rec.service());
        if !shown || !service_ok {
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
                output::data(&ps_json(paths, rec, st).to_string());
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
                let created = created_ago(&rec.created);
                table.push([
                    rec.name.clone(),
                    rec.image.clone(),
                    format!("\"{cmd}\""),
                    rec.service().unwrap_or_default().to_string(),
                    created,
                    status_with_pause(paths, rec, st),
                    ports_text(rec, &st.ports),
                ]);
            }
            output::table(&table);
        }
        // A Go template: the JSON fields, and those of docker compose's table.
        f => {
            let rows: Vec<super::format::Row> = rows
                .iter()
                .map(|(rec, st)| {
                    let mut v = ps_json(paths, rec, st);
                    v["Ports"] = ports_text(rec, &st.ports).into();
                    v["RunningFor"] = created_ago(&rec.created).into();
                    v["CreatedAt"] = rec.created.clone().into();
                    v["Names"] = rec.name.clone().into();
                    v["Networks"] = rec
                        .networks
                        .iter()
                        .map(|n| n.network.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                        .into();
                    v["Mounts"] = rec
                        .mounts
                        .iter()
                        .map(|m| {
                            m.volume
                                .clone()
                                .unwrap_or_else(|| m.source.display().to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                        .into();
                    super::format::Row::new(v, rec.labels.clone())
                })
                .collect();
            super::format::print(
                f,
                &rows,
                &[
                    ("ID", "CONTAINER ID"),
                    ("RunningFor", "CREATED"),
                    ("CreatedAt", "CREATED AT"),
                    ("ExitCode", "EXIT CODE"),
                ],
            )?;
        }
    }
    Ok(0)
}

/// `ps --format json`'s object for a container.
fn ps_json(
    paths: &Paths,
    rec: &ContainerRecord,
    st: &crate::engine::container::State,
) -> serde_json::Value {
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
    serde_json::json!({
        "ID": rec.id,
        "Name": rec.name,
        "Image": rec.image,
        "Command": rec.process.args.join(" "),
        "Project": rec.project(),
        "Service": rec.service(),
        "Created": rec.created,
        "State": state_name(paths, rec, st),
        "Status": status_with_pause(paths, rec, st),
        "Health": st.health.as_ref().map_or("", |h| h.status.as_str()),
        "ExitCode": st.exit_code.unwrap_or(0),
        "Publishers": publishers,
        "Labels": rec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
    })
}

/// `berth compose images [SERVICE...]`: the image of each of the project's containers, as
/// docker compose lists them (sorted by container; `-q` the distinct full image ids; `--format
/// json` one object per line with docker compose's `ImageSummary` fields).
pub fn compose_images(paths: &Paths, g: &Global, a: &super::images::ImagesArgs) -> Result<i32> {
    let name = project_name(g)?;
    let store = crate::engine::image::ImageStore::open(&paths.images())?;
    let sizes: std::collections::HashMap<String, u64> = store
        .list_filtered(&[])?
        .into_iter()
        .map(|i| (i.id, i.size))
        .collect();
    let mut recs: Vec<ContainerRecord> = project::containers(paths, &name)?
        .into_iter()
        .filter(|r| {
            a.reference.is_empty() || a.reference.iter().any(|s| Some(s.as_str()) == r.service())
        })
        .collect();
    recs.sort_by(|x, y| x.name.cmp(&y.name));
    let mut rows = Vec::new();
    for rec in &recs {
        // An image removed since (`rmi -f`) leaves its container out, as docker compose
        // cannot inspect it either.
        let Ok(image) = store.resolve(&rec.image_id) else {
            continue;
        };
        // As docker compose: from the container's image reference, `latest` when it has
        // neither tag nor digest; nothing for an image id.
        let (repository, tag) = match crate::engine::image::Reference::parse(&rec.image) {
            Ok(r) if !rec.image.starts_with("sha256:") => {
                let tag = match (r.tag(), r.digest()) {
                    (Some(t), _) => t.to_string(),
                    (None, None) => "latest".to_string(),
                    (None, Some(_)) => String::new(),
                };
                (r.short_name(), tag)
            }
            _ => (String::new(), String::new()),
        };
        rows.push((rec, image, repository, tag));
    }
    if a.quiet {
        let mut seen = Vec::new();
        for (_, image, ..) in &rows {
            let id = image
                .id
                .strip_prefix("sha256:")
                .unwrap_or(&image.id)
                .to_string();
            if !seen.contains(&id) {
                output::data(&id);
                seen.push(id);
            }
        }
        return Ok(0);
    }
    let json = |(rec, image, repository, tag): &(
        &ContainerRecord,
        crate::engine::image::Image,
        String,
        String,
    )| {
        serde_json::json!({
            "ID": image.id,
            "ContainerName": rec.name,
            "Repository": repository,
            "Tag": tag,
            "Platform": {
                "architecture": image.config.architecture().to_string(),
                "os": image.config.os().to_string(),
            },
            "Size": sizes.get(&image.id).copied().unwrap_or(0),
            "Created": image.config.created().clone().unwrap_or_default(),
            "LastTagTime": "0001-01-01T00:00:00Z",
        })
    };
    match a.format.as_str() {
        "json" => {
            for r in &rows {
                output::data(&json(r).to_string());
            }
        }
        "table" => {
            let mut table = vec![
                [
                    "CONTAINER",
                    "REPOSITORY",
                    "TAG",
                    "PLATFORM",
                    "IMAGE ID",
                    "SIZE",
                    "CREATED",
                ]
                .map(String::from),
            ];
            for (rec, image, repository, tag) in &rows {
                let none = |s: &str| {
                    if s.is_empty() {
                        "<none>".to_string()
                    } else {
                        s.to_string()
                    }
                };
                let hex = image.id.strip_prefix("sha256:").unwrap_or(&image.id);
                table.push([
                    rec.name.clone(),
                    none(repository),
                    none(tag),
                    format!("{}/{}", image.config.os(), image.config.architecture()),
                    hex[..hex.len().min(12)].to_string(),
                    super::images::human_size(sizes.get(&image.id).copied().unwrap_or(0)),
                    image
                        .config
                        .created()
                        .as_deref()
                        .map(created_ago)
                        .unwrap_or_default(),
                ]);
            }
            output::table(&table);
        }
        template => {
            let rows: Vec<super::format::Row> = rows
                .iter()
                .map(|r| super::format::Row::new(json(r), Default::default()))
                .collect();
            super::format::print(template, &rows, &[("ContainerName", "CONTAINER")])?;
        }
    }
    Ok(0)
}

/// `5 minutes ago`, from a record's RFC 3339 creation time.
fn created_ago(created: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(created)
        .map(|t| {
            format!(
                "{} ago",
                human_duration(chrono::Utc::now().signed_duration_since(t))
            )
        })
        .unwrap_or_default()
}

pub fn logs(paths: &Paths, g: &Global, a: &super::logs::LogsArgs) -> Result<i32> {
    super::logs::logs(paths, &project_name(g)?, a)
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
    /// Index of the container if the service has multiple replicas (0: the first running).
    #[arg(long, default_value_t = 0)]
    pub index: u32,
    /// Disable pseudo-TTY allocation. By default a TTY is allocated when stdin is a terminal.
    #[arg(short = 'T', long = "no-tty", alias = "no-TTY")]
    pub no_tty: bool,
    /// Keep STDIN open (always the case, as in docker compose).
    #[arg(short, long, hide = true)]
    pub interactive: bool,
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
    // As docker compose: a running container of the service (one-offs last).
    let recs: Vec<ContainerRecord> = project::containers(paths, project)?
        .into_iter()
        .filter(|r| r.service() == Some(service))
        .filter(|r| r.state(paths).is_ok_and(|s| s.status == Status::Running))
        .collect();
    match replicas(recs, index, true).into_iter().next() {
        Some(r) => Ok(r),
        None if index > 0 => bail!("service {service:?} is not running container #{index}"),
        None => bail!("service {service:?} is not running"),
    }
}

/// A service's containers as docker compose picks among them: `index` N > 0 only the replica
/// numbered N (a one-off has no number); 0 all of them (the one-offs only with `oneoffs`),
/// replicas by number, then one-offs.
pub(super) fn replicas(
    recs: Vec<ContainerRecord>,
    index: u32,
    oneoffs: bool,
) -> Vec<ContainerRecord> {
    use crate::engine::container::labels::NUMBER;
    let mut recs: Vec<ContainerRecord> = recs
        .into_iter()
        .filter(|r| {
            let oneoff = project::up::is_oneoff(r);
            if index > 0 {
                !oneoff && r.label(NUMBER) == Some(&index.to_string())
            } else {
                oneoffs || !oneoff
            }
        })
        .collect();
    recs.sort_by_key(|r| {
        (
            project::up::is_oneoff(r),
            r.label(NUMBER).and_then(|n| n.parse::<u32>().ok()),
        )
    });
    recs
}

pub fn exec(paths: &Paths, g: &Global, a: &ExecArgs) -> Result<i32> {
    use crate::engine::exec::{self, ExecSpec};
    let name = project_name(g)?;
    let rec = service_container(paths, &name, &a.service, a.index)?;
    let (uid, gid, additional_gids) = match &a.user {
        Some(u) => {
            let (uid, gid) = crate::project::container::resolve_user(u, &rec.layers)
                .map_err(|e| anyhow::anyhow!("service {:?}: {e}", a.service))?;
            // As Docker: the user's groups, then the service's `group_add`.
            let groups = crate::project::container::supplementary_groups(
                u,
                uid,
                gid,
                &rec.host.group_add,
                &rec.layers,
            )
            .map_err(|e| anyhow::anyhow!("service {:?}: {e}", a.service))?;
            (Some(uid), Some(gid), Some(groups))
        }
        None => (None, None, None),
    };
    let spec = ExecSpec {
        args: a.command.clone(),
        // `-e KEY` takes KEY from berth's environment; unset there, it is not set at all.
        env: a
            .env
            .iter()
            .filter_map(|e| match e.split_once('=') {
                Some((k, v)) => Some((k.to_string(), v.to_string())),
                None => std::env::var(e).ok().map(|v| (e.clone(), v)),
            })
            .collect(),
        cwd: a.workdir.clone(),
        uid,
        gid,
        additional_gids,
        privileged: a.privileged,
    };
    use std::io::IsTerminal;
    // docker compose's default: a terminal when stdout is one (so `exec db dump > file` from
    // a shell gets no `\r\n`); berth also wants stdin to be one rather than refusing.
    if !a.detach && !a.no_tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        let (pid, master) = match exec::spawn_tty(paths, &rec, &spec) {
            Ok(x) => x,
            Err(e) => return exec_failed(e),
        };
        crate::engine::cgroups::cool();
        crate::engine::tty::relay(master);
        return Ok(exec::wait(pid));
    }
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
        Err(e) => return exec_failed(e),
    };
    crate::engine::cgroups::cool();
    if a.detach {
        return Ok(0);
    }
    Ok(exec::wait(pid))
}

/// As docker: 127 when the command is not found, 126 when it cannot be run.
fn exec_failed(e: crate::engine::exec::ExecError) -> Result<i32> {
    if !matches!(e, crate::engine::exec::ExecError::Failed { .. }) {
        return Err(e.into());
    }
    let code = if e.to_string().contains("not found") {
        127
    } else {
        126
    };
    output::error(&anyhow::Error::from(e));
    Ok(code)
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run container in background and print container ID.
    #[arg(short, long)]
    pub detach: bool,
    /// Automatically remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Set environment variables.
    #[arg(short, long = "env", value_name = "KEY[=VAL]")]
    pub env: Vec<String>,
    /// Set environment variables from file.
    #[arg(long, value_name = "FILE")]
    pub env_from_file: Vec<std::path::PathBuf>,
    /// Add Linux capabilities.
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Pull image before running ("always"|"missing"|"never").
    #[arg(long, value_name = "POLICY")]
    pub pull: Option<String>,
    /// Build image before starting container.
    #[arg(long)]
    pub build: bool,
    /// Don't print anything to STDOUT (progress included).
    #[arg(short, long)]
    pub quiet: bool,
    /// Suppress progress output from the build process.
    #[arg(long)]
    pub quiet_build: bool,
    /// Pull without printing progress information.
    #[arg(long)]
    pub quiet_pull: bool,
    /// Remove containers for services not defined in the Compose file.
    #[arg(long)]
    pub remove_orphans: bool,
    /// Override the entrypoint of the image.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Don't start linked services.
    #[arg(long)]
    pub no_deps: bool,
    /// Publish a container's port(s) to the host.
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Run command with the service's ports enabled and mapped to the host.
    #[arg(short = 'P', long)]
    pub service_ports: bool,
    /// Use the service's network aliases in the networks the container joins.
    #[arg(long)]
    pub use_aliases: bool,
    /// Run as specified username or uid.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Bind mount a volume.
    #[arg(short, long, alias = "volumes")]
    pub volume: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Add or override a label.
    #[arg(short, long, alias = "labels")]
    pub label: Vec<String>,
    /// Disable pseudo-TTY allocation (default: auto-detected; `--no-tty=false` asks for one).
    #[arg(short = 'T', long = "no-tty", alias = "no-TTY", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub no_tty: Option<bool>,
    /// Allocate a pseudo-TTY (the default on a terminal).
    #[arg(short = 't', long = "tty", hide = true)]
    pub tty: bool,
    /// Keep STDIN open even if not attached (the default; `-i=false` closes it).
    #[arg(short, long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub interactive: Option<bool>,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// The service (in a project), or an image when there is no compose file.
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(paths: &Paths, g: &Global, a: &RunArgs) -> Result<i32> {
    use crate::project::run::RunOptions;
    let command = (!a.command.is_empty()).then(|| a.command.clone());
    // In a project folder SERVICE is a service; with no compose file it is an image (docker run).
    // The service is enabled whatever its profile, and only its own and its dependencies' env
    // files must exist, as with docker compose.
    let (project, service) = match load_enabling(g, std::slice::from_ref(&a.service)) {
        Ok(p) => (p, a.service.clone()),
        Err(e)
            if e.chain().any(|c| {
                matches!(
                    c.downcast_ref(),
                    Some(crate::compose::ComposeError::NotFound { .. })
                )
            }) && g.files.is_empty() =>
        {
            (
                crate::project::run::standalone(&a.service, command.clone()),
                "run".to_string(),
            )
        }
        Err(e) => return Err(e),
    };
    if a.publish.iter().any(|_| a.service_ports) {
        bail!("--service-ports and --publish are incompatible");
    }
    let tty = run_tty(a)?;
    let interactive = a.interactive.unwrap_or(true);
    // `--env-from-file` first, then `-e`, which wins.
    let mut env: Vec<(String, Option<String>)> = Vec::new();
    for f in &a.env_from_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("--env-from-file {}", f.display()))?;
        let vars = crate::compose::dotenv::read(&text, &|k| std::env::var(k).ok())
            .map_err(|e| anyhow::anyhow!("--env-from-file {}: {e}", f.display()))?;
        env.extend(vars.into_iter().map(|(k, v)| (k, Some(v))));
    }
    env.extend(a.env.iter().map(|e| match e.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (e.clone(), None),
    }));
    let pull = a
        .pull
        .as_deref()
        .filter(|p| *p != "policy")
        .map(project::pull::PullPolicy::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--pull: {e}"))?;
    let opts = RunOptions {
        service,
        command,
        entrypoint: a.entrypoint.as_deref().map(shell_words_split).transpose()?,
        env,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        pull,
        build: a.build,
        remove_orphans: a.remove_orphans,
        use_aliases: a.use_aliases,
        name: a.name.clone(),
        no_deps: a.no_deps,
        service_ports: a.service_ports,
        publish: a.publish.clone(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        init: a.init,
        tty,
        interactive,
        attach: !a.detach,
        rm: a.rm,
        terminal_size: crate::sys::pty::size(std::os::fd::AsFd::as_fd(&std::io::stdout())),
        volumes: a.volume.clone(),
        labels: a
            .label
            .iter()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
    };
    crate::sys::timing::mark("run loaded");
    let rt = runtime()?;
    // As docker compose: the images' and dependencies' progress on stderr, unless `-q`;
    // `--quiet-pull` and `--quiet-build` leave out a pull's layers and a build's steps.
    let progress = project::Filtered {
        inner: if a.quiet {
            &crate::project::Quiet
        } else {
            output::progress(&g.progress)
        },
        quiet_pull: a.quiet_pull,
        quiet_build: a.quiet_build,
    };
    let (rec, terminal) =
        rt.block_on(crate::project::run::run(paths, &project, &opts, &progress))?;
    crate::engine::cgroups::cool();
    output::finish();
    if a.detach {
        output::data(&rec.name);
        return Ok(0);
    }
    // Signals to us go to the container (with a terminal, ^C reaches it through the pty). No
    // other thread may take them first: the runtime's (a pull's blocking pool) go with it.
    drop(rt);
    crate::engine::control::forward_signals(paths, &rec);
    // A terminal is relayed as it is (raw mode, window size) until the container side closes
    // it; otherwise its output is streamed from the log, stdout to stdout and stderr to stderr.
    if let Some(t) = &terminal {
        crate::engine::tty::relay_with(
            &t.master,
            Some(std::os::fd::AsFd::as_fd(&t.output)),
            interactive,
        );
    }
    let code = follow_run(paths, &rec, terminal.is_none())?;
    crate::sys::timing::mark("run exited");
    if a.rm {
        remove_with_anonymous_volumes(paths, &rec)?;
        crate::sys::timing::mark("run removed");
    }
    Ok(code)
}

/// Removes a one-off container and, as `docker run --rm` does, its anonymous volumes.
fn remove_with_anonymous_volumes(paths: &Paths, rec: &ContainerRecord) -> Result<()> {
    let host = project::net_host(paths);
    runtime()?.block_on(project::down::remove_container(
        paths,
        &host,
        rec,
        Some(Duration::ZERO),
    ))?;
    project::anonymous::remove(paths, rec)?;
    Ok(())
}

/// `berth __autoremove ID`: removes a `run -d --rm` container once its shim is done, with its
/// anonymous volumes.
pub fn auto_remove(paths: &Paths, id: &str) -> Result<i32> {
    let Some(rec) = crate::engine::container::list(paths)?
        .into_iter()
        .find(|r| r.id == id)
    else {
        return Ok(0);
    };
    remove_with_anonymous_volumes(paths, &rec)?;
    Ok(0)
}

/// Whether `run` gives the container a terminal, as docker compose decides: `-t` yes, `-T`
/// no; by default when stdout is a terminal, and stdin too unless `-i` was given explicitly.
fn run_tty(a: &RunArgs) -> Result<bool> {
    use std::io::IsTerminal;
    let stdin_terminal = std::io::stdin().is_terminal();
    let tty = match (a.tty, a.no_tty) {
        (true, Some(_)) => bail!("--tty and --no-tty can't be used together"),
        (true, None) => true,
        (false, Some(no)) => !no,
        (false, None) => {
            std::io::stdout().is_terminal() && (stdin_terminal || a.interactive.is_some())
        }
    };
    if tty && !a.detach && a.interactive.unwrap_or(true) && !stdin_terminal {
        // docker compose's words (its CLI library's), with the older docker ones.
        bail!(
            "cannot attach stdin to a TTY-enabled container because stdin is not a terminal \
             (the input device is not a TTY)"
        );
    }
    Ok(tty)
}

/// Waits for a foreground `run` container to exit and returns its code; with `print`, its
/// output is streamed from the log meanwhile, stdout to stdout and stderr to stderr.
fn follow_run(paths: &Paths, rec: &ContainerRecord, print: bool) -> Result<i32> {
    let log = rec.dir(paths).join(logs::LOG_FILE);
    let mut offset = 0;
    let print_from = |offset: u64| -> Result<u64> {
        if !print {
            return Ok(offset);
        }
        let (records, off) = logs::read_from(&log, offset)?;
        for r in records {
            let text = r.log.strip_suffix('\n').unwrap_or(&r.log);
            if r.stream == "stderr" {
                output::note(text);
            } else {
                output::data(text);
            }
        }
        Ok(off)
    };
    loop {
        let st = rec.state(paths)?;
        offset = print_from(offset)?;
        if st.status == Status::Exited && !crate::sys::proc::alive(st.shim_pid, st.shim_start) {
            print_from(offset)?;
            return Ok(st.exit_code.unwrap_or(0));
        }
        // Output is polled every 20 ms; the shim's exit ends the wait at once.
        crate::sys::proc::wait_exit(st.shim_pid, st.shim_start, Duration::from_millis(20));
    }
}

fn shell_words_split(s: &str) -> Result<Vec<String>> {
    shell_words::split(s).with_context(|| format!("invalid --entrypoint {s:?}"))
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Show all stopped Compose projects.
    #[arg(short, long)]
    pub all: bool,
    /// Only display project names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// `ls`: the projects under this root, from their containers' labels.
pub fn ls(paths: &Paths, a: &LsArgs) -> Result<i32> {
    use std::collections::BTreeMap;
    let mut projects: BTreeMap<String, (BTreeMap<&'static str, usize>, String)> = BTreeMap::new();
    for rec in crate::engine::container::list(paths)? {
        let Some(p) = rec.project() else { continue };
        let st = rec.state(paths)?;
        let entry = projects.entry(p.to_string()).or_default();
        *entry.0.entry(st.status.as_str()).or_default() += 1;
        entry.1 = rec
            .label(crate::engine::container::labels::CONFIG_FILES)
            .unwrap_or_default()
            .to_string();
    }
    let rows: Vec<(String, String, String)> = projects
        .into_iter()
        .filter(|(_, (counts, _))| a.all || counts.contains_key("running"))
        .map(|(name, (counts, files))| {
            let status = counts
                .iter()
                .map(|(s, n)| format!("{s}({n})"))
                .collect::<Vec<_>>()
                .join(", ");
            (name, status, files)
        })
        .collect();
    if a.quiet {
        rows.iter().for_each(|(n, _, _)| output::data(n));
    } else if a.format == "json" {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(n, s, f)| serde_json::json!({"Name": n, "Status": s, "ConfigFiles": f}))
            .collect();
        output::data(&serde_json::Value::Array(v).to_string());
    } else if a.format != "table" {
        let rows: Vec<super::format::Row> = rows
            .iter()
            .map(|(n, s, f)| {
                super::format::Row::new(
                    serde_json::json!({"Name": n, "Status": s, "ConfigFiles": f}),
                    Default::default(),
                )
            })
            .collect();
        super::format::print(&a.format, &rows, &[("ConfigFiles", "CONFIG FILES")])?;
    } else {
        let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
        let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(6);
        output::data(&format!(
            "{:<w0$}   {:<w1$}   CONFIG FILES",
            "NAME", "STATUS"
        ));
        for (n, s, f) in &rows {
            output::data(&format!("{n:<w0$}   {s:<w1$}   {f}"));
        }
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// Drops the project when the first container stops.
    #[arg(long)]
    pub down_project: bool,
    #[arg(required = true)]
    pub services: Vec<String>,
}

/// `wait`: blocks until the services' containers stop; returns the first one's exit code.
pub fn wait(paths: &Paths, g: &Global, a: &WaitArgs) -> Result<i32> {
    let name = project_name(g)?;
    let recs: Vec<ContainerRecord> = project::containers(paths, &name)?
        .into_iter()
        .filter(|r| {
            r.service()
                .is_some_and(|s| a.services.iter().any(|x| x == s))
        })
        .collect();
    if recs.is_empty() {
        bail!("no containers for the services {:?}", a.services);
    }
    let code = loop {
        if let Some(code) = recs.iter().find_map(|r| {
            let st = r.state(paths).ok()?;
            (st.status == Status::Exited && !crate::sys::proc::alive(st.shim_pid, st.shim_start))
                .then(|| st.exit_code.unwrap_or(0))
        }) {
            break code;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if a.down_project {
        let opts = DownOptions {
            volumes: false,
            timeout: None,
            images: Vec::new(),
            remove_orphans: false,
            services: None,
            only: Default::default(),
        };
        runtime()?.block_on(project::down::down(
            paths,
            &name,
            &opts,
            output::progress(&g.progress),
        ))?;
    }
    Ok(code)
}
