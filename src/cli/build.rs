//! `berth build` (a Dockerfile, as `docker build`) and `berth builder prune`.
use super::{Global, output};
use crate::compose::Project;
use crate::engine::build::{self, BuildOptions, Reporter};
use crate::project::build::{self as project_build, Overrides};
use crate::state::Paths;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (`name:tag`); repeatable.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Set build-time variables (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set metadata for the image (`KEY=VALUE`).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Set the target build stage to build.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache when building the image.
    #[arg(long)]
    pub no_cache: bool,
    /// Network of RUN instructions: default (private), host or none.
    #[arg(long)]
    pub network: Option<String>,
    /// Suppress the build output and print the image ID on success.
    #[arg(short, long)]
    pub quiet: bool,
    /// Always pull base images, even when they are present.
    #[arg(long)]
    pub pull: bool,
    /// Extra `/etc/hosts` lines of RUN (`name:ip`); repeatable.
    #[arg(long = "add-host")]
    pub add_hosts: Vec<String>,
    /// Size of `/dev/shm` of RUN (`64m`).
    #[arg(long)]
    pub shm_size: Option<String>,
    /// A secret RUN can mount: `id=ID,src=FILE` or `id=ID,env=VAR`; repeatable.
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// A build context directory (`berth build -t NAME DIR`), or the services of the compose
    /// project to build (`berth build [SERVICE...]`).
    pub args: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum BuilderCommand {
    /// Remove the build cache.
    Prune {
        /// Do not prompt for confirmation (accepted for compatibility).
        #[arg(short, long)]
        force: bool,
        /// Remove all cache (accepted for compatibility).
        #[arg(short, long)]
        all: bool,
    },
}

struct Progress {
    quiet: bool,
    n: std::cell::Cell<usize>,
}

impl Reporter for Progress {
    fn step(&self, line: &str) {
        if !self.quiet {
            self.n.set(self.n.get() + 1);
            output::note(&format!("#{} {line}", self.n.get()));
        }
    }
    fn output(&self, line: &str) {
        if !self.quiet {
            output::note(&format!("#{} {line}", self.n.get()));
        }
    }
}

fn pairs(list: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for kv in list {
        match kv.split_once('=') {
            Some((k, v)) => out.insert(k.to_owned(), v.to_owned()),
            None if what == "build-arg" => match std::env::var(kv) {
                Ok(v) => out.insert(kv.clone(), v),
                Err(_) => continue,
            },
            None => bail!("invalid --{what} {kv:?}: expected KEY=VALUE"),
        };
    }
    Ok(out)
}

/// Which of the two forms a `berth build` is.
enum Form {
    /// `berth build [-t NAME] DIR`: a Dockerfile build, as `docker build`.
    Dockerfile(PathBuf),
    /// `berth build [SERVICE...]`: the project's services, as `docker compose build`.
    Project(Box<Project>),
}

/// Decides by the arguments: tags, `-f`, `--target` or a `-` mean a Dockerfile build; else, when
/// a compose file is found and every argument names one of its services (or there is none),
/// the project's services; else exactly one argument is a context directory.
fn form(g: &Global, a: &BuildArgs) -> Result<Form> {
    let dockerfile_only = !a.tags.is_empty()
        || a.file.is_some()
        || a.target.is_some()
        || a.args.iter().any(|x| x == "-");
    let project = if dockerfile_only {
        None
    } else {
        // Builds need no env files (docker compose builds without resolving them either).
        Some(super::project::load_without_env_files(g))
    };
    match (project, a.args.as_slice()) {
        (Some(Ok(p)), names) if names.iter().all(|n| p.services.contains_key(n)) => {
            Ok(Form::Project(Box::new(p)))
        }
        (_, [dir]) => Ok(Form::Dockerfile(PathBuf::from(dir))),
        (Some(Err(e)), []) => {
            Err(e.context("berth build without a context directory builds the compose project"))
        }
        (Some(Ok(_)), names) if !names.is_empty() => bail!("no such service: {}", names.join(", ")),
        _ => bail!(
            "berth build takes one context directory (berth build -t NAME DIR) or service names \
             of the compose project (berth build [SERVICE...])"
        ),
    }
}

fn progress(quiet: bool) -> Progress {
    Progress {
        quiet,
        n: Default::default(),
    }
}

pub fn build(paths: &Paths, g: &Global, a: &BuildArgs) -> Result<i32> {
    match form(g, a)? {
        Form::Dockerfile(dir) => build_dockerfile(paths, a, dir),
        Form::Project(p) => build_project(paths, a, &p),
    }
}

fn build_project(paths: &Paths, a: &BuildArgs, p: &Project) -> Result<i32> {
    let over = Overrides {
        args: pairs(&a.build_args, "build-arg")?,
        no_cache: a.no_cache,
        pull: a.pull,
    };
    let started = std::time::Instant::now();
    let built = project_build::build_services(paths, p, &a.args, &over, &progress(a.quiet))?;
    // `-q`: nothing at all but errors, as docker compose build (unlike docker build, no id).
    if a.quiet {
        return Ok(0);
    }
    for (service, name, id) in &built {
        output::note(&format!("service {service}: built {name} ({id})"));
    }
    if built.is_empty() {
        output::note("no service to build: none has a build section");
    } else {
        output::note(&format!(
            "built {} service(s) in {:.2}s",
            built.len(),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(0)
}

fn build_dockerfile(paths: &Paths, a: &BuildArgs, context: PathBuf) -> Result<i32> {
    let mut inline = None;
    let mut dockerfile = a.file.clone();
    if a.file.as_deref() == Some(std::path::Path::new("-")) {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the Dockerfile from standard input")?;
        inline = Some(s);
        dockerfile = None;
    }
    let mut extra_hosts = Vec::new();
    for h in &a.add_hosts {
        let (name, ip) = h
            .split_once(['=', ':'])
            .filter(|(_, ip)| ip.parse::<std::net::IpAddr>().is_ok())
            .with_context(|| format!("invalid --add-host {h:?}: expected NAME:IP"))?;
        extra_hosts.push((name.to_owned(), ip.to_owned()));
    }
    let shm_size = match &a.shm_size {
        Some(s) => Some(
            crate::compose::normalize::parse_bytes(s)
                .filter(|n| *n > 0)
                .with_context(|| format!("invalid --shm-size {s:?}"))?,
        ),
        None => None,
    };
    let mut secrets = BTreeMap::new();
    for s in &a.secrets {
        let (id, content) = secret(s)?;
        secrets.insert(id, content);
    }
    let opts = BuildOptions {
        context,
        dockerfile,
        dockerfile_inline: inline,
        build_args: pairs(&a.build_args, "build-arg")?,
        target: a.target.clone(),
        tags: a.tags.clone(),
        labels: pairs(&a.labels, "label")?,
        no_cache: a.no_cache,
        network: a.network.clone(),
        pull: a.pull,
        extra_hosts,
        shm_size,
        secrets,
    };
    let progress = progress(a.quiet);
    let started = std::time::Instant::now();
    let built = build::build(paths, &opts, &progress)?;
    if a.quiet {
        output::data(&built.image_id);
    } else {
        output::note(&format!(
            "built {} in {:.2}s ({} of {} steps cached)",
            built.image_id,
            started.elapsed().as_secs_f64(),
            built.cached,
            built.steps
        ));
        for t in &a.tags {
            output::note(&format!("naming to {t}"));
        }
    }
    Ok(0)
}

/// `--secret id=ID,src=FILE` (also `source=`), `id=ID,env=VAR`, or `id=ID` (the variable ID).
fn secret(spec: &str) -> Result<(String, Vec<u8>)> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    for kv in spec.split(',') {
        match kv.split_once('=') {
            Some(("id", v)) => id = Some(v.to_owned()),
            Some(("src" | "source", v)) => src = Some(v.to_owned()),
            Some(("env", v)) => env = Some(v.to_owned()),
            Some(("type", "file" | "env")) => {}
            _ => bail!("invalid --secret {spec:?}: expected id=ID,src=FILE or id=ID,env=VAR"),
        }
    }
    let id = id.with_context(|| format!("invalid --secret {spec:?}: id= is missing"))?;
    let content = match (src, env) {
        (Some(f), _) => {
            std::fs::read(&f).with_context(|| format!("reading secret {id:?} from {f}"))?
        }
        (None, Some(v)) => std::env::var(&v)
            .with_context(|| format!("secret {id:?}: ${v} is not set"))?
            .into_bytes(),
        (None, None) => std::env::var(&id)
            .with_context(|| format!("secret {id:?}: give src=FILE or env=VAR"))?
            .into_bytes(),
    };
    Ok((id, content))
}

pub fn builder(paths: &Paths, c: &BuilderCommand) -> Result<i32> {
    match c {
        BuilderCommand::Prune { .. } => {
            let n = build::prune(paths)?;
            output::data(&format!("Deleted build cache objects: {n}"));
            Ok(0)
        }
    }
}
