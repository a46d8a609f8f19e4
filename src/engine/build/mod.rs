//! Dockerfile builds executed by berth's own runtime: no daemon, no external builder.
//!
//! The one design decision to know: a build step is a function from a **step state** (the
//! layers so far, as store blobs, and the image config) to the next one, and the cache maps
//! `hash(parent state, instruction, inputs)` to the resulting state. An unchanged rebuild
//! therefore only hashes its inputs and reads small JSON files; nothing runs. Steps that change
//! files (RUN, COPY, ADD, WORKDIR) work on a throwaway overlay whose upper directory becomes
//! the new layer.
pub mod commit;
pub mod config;
pub mod context;
pub mod executor;
pub mod fetch;
pub mod fsops;
pub mod ignore;
pub mod layer;
pub mod mounts;
pub mod network;
pub mod parser;
pub mod reap;
pub mod run;
pub mod shell;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::state::Paths;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] parser::ParseError),
    #[error("{file}:{line}: {message}")]
    Step {
        file: String,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Image(#[from] crate::engine::image::ImageError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Context(String),
    #[error("{0}")]
    Other(String),
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub context: PathBuf,
    /// Default `<context>/Dockerfile`; may lie outside the context.
    pub dockerfile: Option<PathBuf>,
    /// The Dockerfile's text itself (stdin, compose `dockerfile_inline`); wins over `dockerfile`.
    pub dockerfile_inline: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// Default network of RUN: `default` (the NAT'd build network, see [`run::RunNetwork`]),
    /// `host` or `none`.
    pub network: Option<String>,
    /// `--pull`: pull base images even when they are present.
    pub pull: bool,
    /// Extra `/etc/hosts` lines of RUN containers: (name, IP).
    pub extra_hosts: Vec<(String, String)>,
    /// Size of RUN containers' `/dev/shm` in bytes (default 64 MiB).
    pub shm_size: Option<u64>,
    /// Secrets RUN may mount with `--mount=type=secret,id=ID`: id → content.
    pub secrets: BTreeMap<String, Vec<u8>>,
}

/// Where progress goes: one line per step, and the output of RUN.
pub trait Reporter {
    fn step(&self, line: &str);
    fn output(&self, line: &str);
}

/// A reporter that drops everything.
pub struct Quiet;

impl Reporter for Quiet {
    fn step(&self, _: &str) {}
    fn output(&self, _: &str) {}
}

/// The outcome of a build.
#[derive(Debug, Clone)]
pub struct Built {
    /// `sha256:<config digest>`.
    pub image_id: String,
    pub steps: usize,
    pub cached: usize,
}

/// Builds an image and tags it.
pub fn build(paths: &Paths, opts: &BuildOptions, rep: &dyn Reporter) -> Result<Built, BuildError> {
    let dockerfile = opts
        .dockerfile
        .clone()
        .unwrap_or_else(|| opts.context.join("Dockerfile"));
    let (text, file) = match &opts.dockerfile_inline {
        Some(t) => (t.clone(), "Dockerfile".to_string()),
        None => (
            std::fs::read_to_string(&dockerfile).map_err(|source| BuildError::Io {
                path: dockerfile.clone(),
                source,
            })?,
            dockerfile
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "Dockerfile".into()),
        ),
    };
    let df = parser::parse(&text, &file)?;
    let ignore = read_ignore(&opts.context, &dockerfile);
    let mut b = executor::Builder::new(paths, opts, rep, file, df.escape, ignore)?;
    let state = b.build(&df);
    network::remove_if_unused(paths);
    let mut state = state?;
    if !opts.labels.is_empty() {
        let labels = state.config.config.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(opts.labels.clone());
    }
    let cfg = &mut state.config;
    cfg.rootfs.diff_ids = state.layers.iter().map(|l| l.diff_id.to_string()).collect();
    cfg.created = cfg.history.last().and_then(|h| h.created.clone());
    let bytes = serde_json::to_vec(&cfg).map_err(|e| BuildError::Other(e.to_string()))?;
    let store = crate::engine::image::ImageStore::open(&paths.images())?;
    let image_id = store.write_image(&bytes, &state.layers, cfg.created.clone(), &opts.tags)?;
    Ok(Built {
        image_id,
        steps: b.steps,
        cached: b.cached,
    })
}

/// `<Dockerfile>.dockerignore` next to the Dockerfile, else `.dockerignore` in the context.
fn read_ignore(context: &Path, dockerfile: &Path) -> ignore::Ignore {
    let mut specific = dockerfile.as_os_str().to_owned();
    specific.push(".dockerignore");
    for p in [PathBuf::from(specific), context.join(".dockerignore")] {
        if let Ok(t) = std::fs::read_to_string(&p) {
            return ignore::Ignore::parse(&t);
        }
    }
    ignore::Ignore::default()
}

/// Pulls `name` into `store` on a thread of its own, so that a build running inside an async
/// runtime (compose `up`) can pull base images without nesting runtimes.
fn pull_image(store: &crate::engine::image::ImageStore, name: &str) -> Result<(), String> {
    let store = store.clone();
    let name = name.to_owned();
    let what = name.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("starting the async runtime: {e}"))?;
        rt.block_on(store.pull(&name, None, &crate::engine::registry::Quiet))
            .map(|_| ())
            .map_err(|e| format!("pulling {name}: {e}"))
    })
    .join()
    .map_err(|_| format!("pulling {what}: the pull thread panicked"))?
}

/// `builder prune`: removes what killed builds left, forgets every cached step and empties
/// the RUN cache mounts. Returns how many entries were removed.
pub fn prune(paths: &Paths) -> Result<usize, BuildError> {
    reap::reap(paths);
    // A killed build's network, once no build uses it.
    network::remove_if_unused(paths);
    let dir = paths.data.join("build-cache");
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            if std::fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
    }
    // RUN --mount=type=cache directories.
    let mounts = paths.data.join("build-cache-mounts");
    if let Ok(rd) = std::fs::read_dir(&mounts) {
        for e in rd.flatten() {
            if std::fs::remove_dir_all(e.path()).is_ok() {
                n += 1;
            }
        }
    }
    Ok(n)
}
