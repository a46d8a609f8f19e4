//! `berth build` (a Dockerfile, as `docker build`) and `berth builder prune`.
use super::output;
use crate::engine::build::{self, BuildOptions, Reporter};
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
    /// Network of RUN instructions: default or none.
    #[arg(long)]
    pub network: Option<String>,
    /// Suppress the build output and print the image ID on success.
    #[arg(short, long)]
    pub quiet: bool,
    /// The build context directory.
    pub path: PathBuf,
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

pub fn build(paths: &Paths, a: &BuildArgs) -> Result<i32> {
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
    let opts = BuildOptions {
        context: a.path.clone(),
        dockerfile,
        dockerfile_inline: inline,
        build_args: pairs(&a.build_args, "build-arg")?,
        target: a.target.clone(),
        tags: a.tags.clone(),
        labels: pairs(&a.labels, "label")?,
        no_cache: a.no_cache,
        network: a.network.clone(),
    };
    let progress = Progress {
        quiet: a.quiet,
        n: Default::default(),
    };
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

pub fn builder(paths: &Paths, c: &BuilderCommand) -> Result<i32> {
    match c {
        BuilderCommand::Prune { .. } => {
            let n = build::prune(paths)?;
            output::data(&format!("Deleted build cache objects: {n}"));
            Ok(0)
        }
    }
}
