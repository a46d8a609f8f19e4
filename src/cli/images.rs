//! Image commands: `images`, `image ls`, `image load`, `load`, `pull`, `push`, `tag`, `login`,
//! `logout`.
use super::transfer::Reporter;
use super::{Global, output};
use crate::compose::Project;
use crate::engine::build::commit::{self, NewImage};
use crate::engine::image::dir_size;
use crate::engine::image::{Filter, ImageStore, Reference, SaveFormat};
use crate::engine::registry::login as login_check;
use crate::engine::registry::{Credentials, Platform, RegistryConfig, RegistryError};
use crate::state::Paths;
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Filter: dangling=true|false, label=KEY[=VALUE], reference=PATTERN; repeatable.
    #[arg(long = "filter")]
    pub filters: Vec<String>,
    /// Show all images (the default; accepted for compatibility).
    #[arg(short, long)]
    pub all: bool,
    /// `berth images`: the repository (and tag) to list, as a reference filter.
    /// `berth compose images`: the services whose containers' images to list.
    #[arg(value_name = "REPOSITORY[:TAG] | SERVICE")]
    pub reference: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Images: names, ids or id prefixes.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to a file, instead of STDOUT; a path ending in `/` or an existing directory gets
    /// the layout's files instead of a tar.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// docker-archive (Docker's manifest.json plus an OCI layout), oci-archive, or oci-dir
    /// (an OCI image layout directory, at -o).
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A rootfs tarball (plain, gzip or zstd), or `-` for STDIN.
    pub file: String,
    /// The name of the new image.
    pub reference: Option<String>,
    /// A Dockerfile instruction applied to the image (CMD, ENV, …); repeatable.
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// The commit message of the image's history.
    #[arg(short, long)]
    pub message: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// The container: name, id or id prefix.
    pub container: String,
    /// The name of the new image.
    pub reference: Option<String>,
    /// Author (`Name <email>`).
    #[arg(short, long)]
    pub author: Option<String>,
    /// A Dockerfile instruction applied to the image (CMD, ENV, …); repeatable.
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// Commit message.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Accepted for compatibility: berth does not pause the container while committing.
    #[arg(short, long)]
    pub pause: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum SystemCommand {
    /// Show disk usage: images, containers, volumes, build cache.
    Df {
        /// Format: table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Read from tar archive file (or OCI layout directory), instead of STDIN.
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Load an image from a tar archive or STDIN.
    Load(LoadArgs),
    /// List images.
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Download an image from a registry.
    Pull(PullArgs),
    /// Upload an image to a registry.
    Push(PushArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(TagArgs),
    /// Display detailed information on one or more images (a JSON array).
    Inspect(InspectArgs),
    /// Show the history of an image.
    History(HistoryArgs),
    /// Remove one or more images.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused images.
    Prune(PruneArgs),
    /// Save images to a tar archive (STDOUT by default).
    Save(SaveArgs),
    /// Create an image from a rootfs tarball.
    Import(ImportArgs),
}

pub fn image(paths: &Paths, g: &Global, c: ImageCommand) -> Result<i32> {
    match c {
        ImageCommand::Load(a) => load(paths, &a),
        ImageCommand::Ls(a) => images(paths, &a),
        ImageCommand::Pull(a) => pull(paths, g, &a),
        ImageCommand::Push(a) => push(paths, g, &a),
        ImageCommand::Tag(a) => tag(paths, &a),
        ImageCommand::Inspect(a) => inspect(paths, &a),
        ImageCommand::History(a) => history(paths, &a),
        ImageCommand::Rm(a) => rm(paths, &a),
        ImageCommand::Prune(a) => prune(paths, &a),
        ImageCommand::Save(a) => save(paths, &a),
        ImageCommand::Import(a) => import(paths, &a),
    }
}

pub fn load(paths: &Paths, a: &LoadArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.images())?;
    let loaded = match &a.input {
        Some(p) => store
            .load_path(p)
            .with_context(|| format!("loading {}", p.display()))?,
        None => store
            .load_reader(std::io::stdin().lock())
            .context("loading from standard input")?,
    };
    if !a.quiet {
        for r in loaded {
            output::data(&format!("Loaded image: {r}"));
        }
    }
    Ok(0)
}

pub fn images(paths: &Paths, a: &ImagesArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.images())?;
    let mut filters = a
        .filters
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    if a.reference.len() > 1 {
        anyhow::bail!(
            "\"berth images\" accepts at most 1 argument (the images of a project's services: \
             berth compose images SERVICE...)"
        );
    }
    if let Some(r) = a.reference.first() {
        filters.push(Filter::Reference(r.clone()));
    }
    let list = store.list_filtered(&filters)?;
    if a.quiet {
        for i in &list {
            output::data(short_id(&i.id));
        }
        return Ok(0);
    }
    let json = |i: &crate::engine::image::ImageSummary| {
        serde_json::json!({
            "Repository": i.repository, "Tag": i.tag, "ID": short_id(&i.id),
            "CreatedAt": i.created, "Size": human_size(i.size),
            "Containers": "N/A", "Digest": "<none>", "VirtualSize": human_size(i.size),
        })
    };
    if a.format == "json" {
        for i in &list {
            output::data(&json(i).to_string());
        }
        return Ok(0);
    }
    if a.format != "table" {
        let rows: Vec<super::format::Row> = list
            .iter()
            .map(|i| {
                let mut v = json(i);
                v["CreatedSince"] = i.created.clone().unwrap_or_else(|| "N/A".into()).into();
                super::format::Row::new(v, Default::default())
            })
            .collect();
        super::format::print(
            &a.format,
            &rows,
            &[
                ("ID", "IMAGE ID"),
                ("CreatedSince", "CREATED"),
                ("CreatedAt", "CREATED AT"),
                ("VirtualSize", "VIRTUAL SIZE"),
            ],
        )?;
        return Ok(0);
    }
    let mut rows = vec![[
        "REPOSITORY".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "CREATED".into(),
        "SIZE".into(),
    ]];
    for i in &list {
        rows.push([
            i.repository.clone(),
            i.tag.clone(),
            short_id(&i.id).to_string(),
            i.created.clone().unwrap_or_else(|| "N/A".into()),
            human_size(i.size),
        ]);
    }
    output::table(&rows);
    Ok(0)
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

pub(super) fn human_size(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.3}GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.3}MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.3}kB", f / 1e3)
    } else {
        format!("{n}B")
    }
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Image references to pull (`busybox`, `localhost:5000/app:1`, `repo@sha256:…`), or
    /// services of the compose project (all of them when none is given).
    pub references: Vec<String>,
    /// Project form: pull what can be pulled, report the failures, exit 0.
    #[arg(long)]
    pub ignore_pull_failures: bool,
    /// Project form: also pull the services the named ones depend on.
    #[arg(long)]
    pub include_deps: bool,
    /// Platform of the image to pull from a multi-platform index (`linux/arm64`).
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Progress output: auto or plain.
    #[arg(long, default_value = "auto")]
    pub progress: String,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Image reference to push, or services of the compose project (all when none is given).
    pub references: Vec<String>,
    /// Project form: push what can be pushed, report the failures.
    #[arg(long)]
    pub ignore_push_failures: bool,
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Progress output: auto or plain.
    #[arg(long, default_value = "auto")]
    pub progress: String,
}

#[derive(Debug, clap::Args)]
pub struct TagArgs {
    /// The image: a name, id or id prefix.
    pub source: String,
    /// The new name.
    pub target: String,
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Registry host (default: docker.io).
    pub server: Option<String>,
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Registry host (default: docker.io).
    pub server: Option<String>,
}

fn multi_thread() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The compose project when `args` are all its services (or empty and a compose file is
/// found); `None` when they are image references.
/// `env_files`: whether the services' env files are read (docker compose's `push` reads them,
/// its `pull` does not).
fn project_form(g: &Global, args: &[String], env_files: bool) -> Result<Option<Project>> {
    let mut opts = super::project::load_options(g)?;
    opts.no_env_resolution = !env_files;
    match crate::compose::load(&opts) {
        Ok(p) if args.iter().all(|a| p.services.contains_key(a)) => Ok(Some(p)),
        Err(e) if args.is_empty() => Err(anyhow::Error::new(e)
            .context("without image references, berth pull/push work on the compose project")),
        _ => Ok(None),
    }
}

/// `berth pull REF…` (also `image pull`): each reference in turn; the first failure stops.
/// Without references, or with service names: the project's service images.
pub fn pull(paths: &Paths, g: &Global, a: &PullArgs) -> Result<i32> {
    if let Some(p) = project_form(g, &a.references, false)? {
        let store = ImageStore::open(&paths.images())?;
        let opts = crate::project::pull::PullOptions {
            services: a.references.clone(),
            ignore_failures: a.ignore_pull_failures,
            include_deps: a.include_deps,
        };
        // As docker compose: `-q` leaves out the layers' lines, not the images'.
        let progress = crate::project::Filtered {
            inner: &super::output::Plain,
            quiet_pull: a.quiet,
            quiet_build: false,
        };
        let failures = multi_thread()?.block_on(crate::project::pull::pull_project(
            &p,
            &store,
            &RegistryConfig::from_env(),
            &opts,
            &progress,
        ))?;
        for f in &failures {
            output::note(&format!("warning: {f}"));
        }
        return Ok(0);
    }
    let store = ImageStore::open(&paths.images())?;
    let platform = a
        .platform
        .as_deref()
        .map(Platform::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let config = RegistryConfig::from_env();
    let reporter = Reporter::new(a.quiet, a.progress == "plain");
    let rt = multi_thread()?;
    for reference in &a.references {
        let r = Reference::parse(reference)
            .with_context(|| format!("invalid reference {reference:?}"))?;
        reporter.note(&format!(
            "{}: Pulling from {}",
            r.tag().or(r.digest()).unwrap_or("latest"),
            r.short_name()
        ));
        let started = std::time::Instant::now();
        let outcome = rt
            .block_on(store.pull_with(&config, reference, platform.as_ref(), &reporter))
            .map_err(with_hint)?;
        tracing::debug!(
            "pulled {reference}: {} bytes received, {} layers unpacked in {:.3}s",
            outcome.downloaded,
            outcome.unpacked_layers,
            started.elapsed().as_secs_f64()
        );
        reporter.note(&format!(
            "Status: {} for {}",
            if outcome.downloaded > 0 {
                "Downloaded newer image"
            } else {
                "Image is up to date"
            },
            r.short()
        ));
        output::data(&r.to_string());
    }
    Ok(0)
}

/// `berth push REF`; without a reference, or with service names, the images of the project's
/// services that name one.
pub fn push(paths: &Paths, g: &Global, a: &PushArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.images())?;
    let config = RegistryConfig::from_env();
    if let Some(p) = project_form(g, &a.references, true)? {
        let progress: &dyn crate::project::Progress = if a.quiet {
            &crate::project::Quiet
        } else {
            &super::output::Plain
        };
        let pushed = multi_thread()?.block_on(crate::project::pull::push_project(
            &p,
            &store,
            &config,
            &a.references,
            a.ignore_push_failures,
            progress,
        ))?;
        for r in pushed {
            output::data(&r);
        }
        return Ok(0);
    }
    let [reference] = a.references.as_slice() else {
        anyhow::bail!("berth push takes one image reference (or service names of the project)");
    };
    let reporter = Reporter::new(a.quiet, a.progress == "plain");
    let r =
        Reference::parse(reference).with_context(|| format!("invalid reference {reference:?}"))?;
    reporter.note(&format!(
        "The push refers to repository [{}]",
        r.repository()
    ));
    multi_thread()?
        .block_on(store.push_with(&config, reference, &reporter))
        .map_err(with_hint)?;
    Ok(0)
}

/// `berth tag SRC DST`.
pub fn tag(paths: &Paths, a: &TagArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.images())?;
    store.tag(&a.source, &a.target)?;
    Ok(0)
}

/// `https://host/v1/` → `host`; no argument → Docker Hub.
fn server_host(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io");
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_owned(),
    }
}

/// `berth login [-u USER] [--password-stdin] [HOST]`.
pub fn login(a: &LoginArgs) -> Result<i32> {
    let host = server_host(a.server.as_deref());
    let term = console::Term::stderr();
    let username = match &a.username {
        Some(u) => u.clone(),
        None if term.is_term() && !a.password_stdin => {
            term.write_str("Username: ")?;
            term.read_line()?.trim().to_owned()
        }
        None => anyhow::bail!("a user name is needed: pass it with -u USER"),
    };
    let password = if a.password_stdin {
        if a.password.is_some() {
            anyhow::bail!("--password and --password-stdin are mutually exclusive");
        }
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s)
            .context("reading the password from standard input")?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else if let Some(p) = &a.password {
        output::note("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p.clone()
    } else if term.is_term() {
        term.write_str("Password: ")?;
        term.read_secure_line()?
    } else {
        anyhow::bail!("a password is needed: pass it with --password-stdin");
    };
    if username.is_empty() || password.is_empty() {
        anyhow::bail!("user name and password must not be empty");
    }
    let creds = Credentials { username, password };
    let config = RegistryConfig::from_env();
    multi_thread()?
        .block_on(login_check(&config, &host, &creds))
        .map_err(with_hint)?;
    config
        .credentials
        .store(&host, &creds)
        .context("storing the credentials")?;
    output::note(&format!(
        "credentials stored in {}",
        config.credentials.path().display()
    ));
    output::data("Login Succeeded");
    Ok(0)
}

/// `berth logout [HOST]`.
pub fn logout(a: &LogoutArgs) -> Result<i32> {
    let host = server_host(a.server.as_deref());
    let config = RegistryConfig::from_env();
    if config.credentials.remove(&host)? {
        output::data(&format!("Removing login credentials for {host}"));
    } else {
        output::note(&format!("Not logged in to {host}"));
    }
    Ok(0)
}

/// Registry errors reach `output::error`, which can ask them for [`RegistryError::hint`].
fn with_hint(e: RegistryError) -> anyhow::Error {
    anyhow::Error::new(e)
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Format the output using a Go template (the JSON array by default).
    #[arg(short, long)]
    pub format: Option<String>,
    /// Images: names, ids or id prefixes.
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    pub image: String,
    /// Format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove an id with several names, or an image a container uses.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove all images no container uses, not only those without a name.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// `image inspect`: a JSON array, as docker prints it.
pub fn inspect(paths: &Paths, a: &InspectArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.images())?;
    let mut out = Vec::new();
    for i in &a.images {
        out.push(store.inspect(i)?);
    }
    let objects: Vec<serde_json::Value> = out
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    if super::format::print_inspect(a.format.as_deref(), &objects)? {
        return Ok(0);
    }
    output::data(&serde_json::to_string_pretty(&out)?);
    Ok(0)
}

/// `image history`.
pub fn history(paths: &Paths, a: &HistoryArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.images())?;
    let rows = store.history(&a.image)?;
    if a.format == "json" {
        for r in rows {
            output::data(
                &serde_json::json!({"CreatedAt": r.created, "CreatedBy": r.created_by,
                    "Comment": r.comment, "EmptyLayer": r.empty_layer})
                .to_string(),
            );
        }
        return Ok(0);
    }
    output::data("CREATED                CREATED BY");
    for r in rows {
        output::data(&format!(
            "{:<22} {}",
            r.created.as_deref().unwrap_or("N/A"),
            r.created_by
        ));
    }
    Ok(0)
}

/// `image rm` / `rmi`: all names given; the first failure is reported after the others ran.
pub fn rm(paths: &Paths, a: &RmArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.images())?;
    let mut failed = None;
    for i in &a.images {
        match store.remove(i, a.force, &paths.containers()) {
            Ok(r) => print_removed(&r),
            Err(e) => {
                output::error(&anyhow::Error::new(e));
                failed = Some(1);
            }
        }
    }
    if a.force || failed.is_none() {
        store.gc(&paths.containers())?;
    }
    Ok(failed.unwrap_or(0))
}

/// `image prune [-a] [-f]`.
pub fn prune(paths: &Paths, a: &PruneArgs) -> Result<i32> {
    if !a.force && console::Term::stderr().is_term() {
        output::note(
            "WARNING! This will remove images without a name (with -a: all images no container uses).",
        );
        output::note("Are you sure you want to continue? [y/N]");
        let answer = console::Term::stderr().read_line()?;
        if !answer.trim().eq_ignore_ascii_case("y") {
            return Ok(0);
        }
    }
    let store = ImageStore::open(&paths.images())?;
    let r = store.prune(a.all, &paths.containers())?;
    print_removed(&r);
    output::data(&format!(
        "Total reclaimed space: {}",
        human_size(r.reclaimed)
    ));
    Ok(0)
}

fn print_removed(r: &crate::engine::image::Removed) {
    for u in &r.untagged {
        output::data(&format!("Untagged: {u}"));
    }
    for d in &r.deleted {
        output::data(&format!("Deleted: {d}"));
    }
}

/// `save` / `image save`: to `-o FILE` (written to a temp name, renamed when complete) or
/// STDOUT, never to a terminal.
pub fn save(paths: &Paths, a: &SaveArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.images())?;
    let dir_format = a.format == "oci-dir";
    let format = if dir_format {
        SaveFormat::OciArchive
    } else {
        SaveFormat::parse(&a.format).with_context(|| {
            format!(
                "invalid --format {:?}: docker-archive, oci-archive or oci-dir",
                a.format
            )
        })?
    };
    let to_dir = a.output.as_ref().is_some_and(|p| {
        dir_format || p.as_os_str().as_encoded_bytes().ends_with(b"/") || p.is_dir()
    });
    if dir_format && a.output.is_none() {
        anyhow::bail!("--format oci-dir writes a directory: name it with -o DIR");
    }
    match &a.output {
        Some(path) if to_dir => store.save_dir(&a.images, format, path)?,
        Some(path) => {
            let tmp = path.with_extension(format!("partial-{}", std::process::id()));
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            let res = store.save(&a.images, format, std::io::BufWriter::new(f));
            if let Err(e) = res {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            if console::Term::stdout().is_term() {
                anyhow::bail!(
                    "refusing to write an archive to a terminal: use -o FILE or redirect stdout"
                );
            }
            // The archive is data for a pipe or file (a terminal was refused above).
            store.save(&a.images, format, std::io::stdout().lock())?;
        }
    }
    Ok(0)
}

/// `import FILE|- [REF]`.
pub fn import(paths: &Paths, a: &ImportArgs) -> Result<i32> {
    let opts = NewImage {
        tags: a.reference.iter().cloned().collect(),
        changes: a.changes.clone(),
        message: a.message.clone(),
        author: None,
    };
    let id = if a.file == "-" {
        commit::import(paths, std::io::stdin().lock(), "stdin", &opts)?
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file))?;
        commit::import(paths, f, &a.file, &opts)?
    };
    output::data(&id);
    Ok(0)
}

/// `commit CONTAINER [REF]`: the container's changes as a layer on its image.
pub fn commit(paths: &Paths, a: &CommitArgs) -> Result<i32> {
    let all = crate::engine::container::list(paths)?;
    let matches: Vec<_> = all
        .iter()
        .filter(|c| c.name == a.container || c.id.starts_with(&a.container))
        .collect();
    let rec = match matches.as_slice() {
        [c] => *c,
        [] => anyhow::bail!("no such container: {}", a.container),
        _ => anyhow::bail!("container name or id prefix {:?} is ambiguous", a.container),
    };
    let opts = NewImage {
        tags: a.reference.iter().cloned().collect(),
        changes: a.changes.clone(),
        message: a.message.clone(),
        author: a.author.clone(),
    };
    let upper = rec.dir(paths).join("upper");
    let id = commit::commit(paths, &upper, &rec.image_id, &opts)
        .with_context(|| format!("committing container {}", rec.name))?;
    output::data(&id);
    Ok(0)
}

/// `system df`.
pub fn system(paths: &Paths, c: &SystemCommand) -> Result<i32> {
    let SystemCommand::Df { format } = c;
    let store = ImageStore::open(&paths.images())?;
    let containers = crate::engine::container::list(paths)?;
    let used_images: std::collections::BTreeSet<&str> =
        containers.iter().map(|c| c.image_id.as_str()).collect();
    let records = store.records()?;
    let mut ids = std::collections::BTreeMap::new();
    for r in records.values() {
        ids.insert(r.config.to_string(), r.size);
    }
    let images_size: u64 = ids.values().sum();
    let images_active = ids
        .keys()
        .filter(|i| used_images.contains(i.as_str()))
        .count();
    let images_reclaim: u64 = ids
        .iter()
        .filter(|(i, _)| !used_images.contains(i.as_str()))
        .map(|(_, s)| s)
        .sum();
    let mut c_size = 0;
    let mut c_active = 0;
    let mut c_reclaim = 0;
    let mut used_volumes = std::collections::BTreeSet::new();
    for c in &containers {
        let size = dir_size(&c.dir(paths).join("upper"));
        c_size += size;
        if c.state(paths)
            .is_ok_and(|s| s.status == crate::engine::container::Status::Running)
        {
            c_active += 1;
            used_volumes.extend(c.mounts.iter().filter_map(|m| m.volume.clone()));
        } else {
            c_reclaim += size;
        }
    }
    let volumes = crate::engine::volume::list(paths)?;
    let mut v_size = 0;
    let mut v_reclaim = 0;
    for v in &volumes {
        let size = dir_size(&paths.volumes().join(&v.name));
        v_size += size;
        if !used_volumes.contains(&v.name) {
            v_reclaim += size;
        }
    }
    let cache = paths.data.join("build-cache");
    let cache_count = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    let cache_size = dir_size(&cache);
    let pct = |r: u64, t: u64| (r * 100).checked_div(t).unwrap_or(0);
    let rows = [
        (
            "Images",
            ids.len(),
            images_active,
            images_size,
            images_reclaim,
        ),
        ("Containers", containers.len(), c_active, c_size, c_reclaim),
        (
            "Local Volumes",
            volumes.len(),
            used_volumes.len(),
            v_size,
            v_reclaim,
        ),
        ("Build Cache", cache_count, 0, cache_size, cache_size),
    ];
    if format == "json" {
        for (t, n, active, size, reclaim) in rows {
            output::data(
                &serde_json::json!({
                    "Type": t, "TotalCount": n, "Active": active, "Size": human_size(size),
                    "Reclaimable": format!("{} ({}%)", human_size(reclaim), pct(reclaim, size)),
                    "SizeBytes": size, "ReclaimableBytes": reclaim,
                })
                .to_string(),
            );
        }
        return Ok(0);
    }
    output::data(&format!(
        "{:<15}{:<12}{:<10}{:<12}{}",
        "TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"
    ));
    for (t, n, active, size, reclaim) in rows {
        output::data(&format!(
            "{:<15}{:<12}{:<10}{:<12}{} ({}%)",
            t,
            n,
            active,
            human_size(size),
            human_size(reclaim),
            pct(reclaim, size)
        ));
    }
    Ok(0)
}
