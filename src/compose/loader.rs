//! Finds the compose files and the environment, then runs the pipeline of compose-go:
//! parse (with positions) → interpolate → cast → validate against the schema → `include` and
//! `extends` → merge the `-f` files → resolve paths → typed model → normalise and check.
//!
//! Every error found on the way is collected with the file, `line:col` and key path where the
//! offending value was written, and all of them are reported together.
use super::dotenv;
use super::error::ComposeError;
use super::interpolate::{Env, InterpolationError, interpolate_value};
use super::merge::{self, Tags};
use super::model::Project;
use super::schema;
use super::yaml::{self, MergeTag, Pos};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The file names searched for, in order of preference.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Override files looked for next to the file that discovery found.
pub const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
];

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files, in order; empty means `COMPOSE_FILE`, else discovery from `working_dir`.
    /// `-` reads the file from `stdin_content`.
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// Where discovery starts (the process's working directory).
    pub working_dir: PathBuf,
    /// The process environment; `.env` values fill in what it lacks.
    pub env: Env,
    /// `--env-file` (repeatable); replaces the default `.env`.
    pub env_files: Vec<PathBuf>,
    /// `--profile` (repeatable); `COMPOSE_PROFILES` adds to them.
    pub profiles: Vec<String>,
    /// Services named on the command line: enabled whatever their profiles, with their
    /// dependencies (as `docker compose up SERVICE` does).
    pub enabled_services: Vec<String>,
    /// The text of `-f -`.
    pub stdin_content: Option<String>,
    /// `config --no-interpolate`.
    pub no_interpolate: bool,
    /// `config --no-path-resolution`.
    pub no_path_resolution: bool,
    /// Skip the schema check (compose-go's `SkipValidation`).
    pub skip_schema: bool,
    /// Skip the semantic checks after loading (compose-go's `SkipConsistencyCheck`).
    pub skip_consistency: bool,
    /// `config --no-env-resolution`: env files are not read, bare `KEY` entries stay unset.
    pub no_env_resolution: bool,
    /// The project is loaded to make containers (`up`, `create`, `run`): the checks docker
    /// compose makes only when it turns a service into a container run too, on the services
    /// named (with their dependencies), else on all.
    pub create_checks: bool,
    /// Where git `include`s are checked out; `None` is docker compose's own cache
    /// (`$XDG_CACHE_HOME/docker-compose`, else `~/.cache/docker-compose`).
    pub remote_cache: Option<PathBuf>,
}

/// Where each key path of the merged model was written.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sources {
    pub files: Vec<PathBuf>,
    pub display: Vec<PathBuf>,
    pub pos: HashMap<String, (usize, Pos)>,
}

impl Sources {
    fn add_file(&mut self, path: &Path, working_dir: &Path) -> usize {
        self.files.push(path.to_path_buf());
        self.display.push(
            path.strip_prefix(working_dir)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| path.to_path_buf()),
        );
        self.files.len() - 1
    }

    /// An error at `path`, placed at the nearest recorded ancestor.
    pub fn error(&self, path: &str, message: String, hint: Option<String>) -> ComposeError {
        let mut p = path;
        loop {
            if let Some((file, pos)) = self.pos.get(p) {
                return ComposeError::At {
                    file: self.display[*file].clone(),
                    pos: *pos,
                    key: path.to_string(),
                    message,
                    hint,
                };
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => break,
            }
        }
        ComposeError::At {
            file: self.display.first().cloned().unwrap_or_default(),
            pos: Pos { line: 1, col: 1 },
            key: path.to_string(),
            message,
            hint,
        }
    }
}

/// A parsed, interpolated document of one file.
struct Doc {
    value: Value,
    tags: HashMap<String, MergeTag>,
}

/// State shared by the whole load.
pub(super) struct Ctx<'a> {
    pub opts: &'a LoadOptions,
    pub env: Env,
    pub sources: Sources,
    pub errors: Vec<ComposeError>,
    pub missing: Vec<String>,
    /// Files being loaded through `include`/`extends`, for cycle detection.
    pub stack: Vec<PathBuf>,
}

/// Loads a project as docker compose would.
pub fn load(opts: &LoadOptions) -> Result<Project, ComposeError> {
    let (value, ctx, project_dir, files, name) = load_value(opts)?;
    // Schema errors make the typed model's errors noise: report them alone.
    if let Some(e) = ComposeError::from_list(ctx.errors) {
        return Err(e);
    }
    let mut errors = Vec::new();
    let project = super::normalize::build_project(
        value,
        name,
        project_dir,
        files,
        ctx.env,
        &ctx.sources,
        opts,
        &mut errors,
    );
    match ComposeError::from_list(errors) {
        Some(e) => Err(e),
        None => project.ok_or_else(|| ComposeError::Invalid {
            file: PathBuf::new(),
            key: String::new(),
            message: "the project could not be loaded".into(),
        }),
    }
}

/// The merged model as a JSON value (for `config --no-normalize`), with the project name.
pub fn load_merged(opts: &LoadOptions) -> Result<(Value, String), ComposeError> {
    let (value, ctx, _, _, name) = load_value(opts)?;
    match ComposeError::from_list(ctx.errors) {
        Some(e) => Err(e),
        None => Ok((value, name)),
    }
}

/// The environment used for interpolation, and the files, without loading the model.
pub fn resolve_environment(
    opts: &LoadOptions,
) -> Result<(Env, Vec<PathBuf>, PathBuf), ComposeError> {
    let (env, files, project_dir) = environment_and_files(opts)?;
    Ok((env, files, project_dir))
}

type Loaded<'a> = (Value, Ctx<'a>, PathBuf, Vec<PathBuf>, String);

fn load_value(opts: &LoadOptions) -> Result<Loaded<'_>, ComposeError> {
    let (env, files, project_dir) = environment_and_files(opts)?;
    let mut ctx = Ctx {
        opts,
        env,
        sources: Sources::default(),
        errors: Vec::new(),
        missing: Vec::new(),
        stack: Vec::new(),
    };

    // Parse every file first: the project name (`name:`) must be known before interpolation,
    // which exposes it as COMPOSE_PROJECT_NAME.
    let mut parsed = Vec::new();
    for file in &files {
        let id = ctx.sources.add_file(file, &opts.working_dir);
        let text = read_text(file, opts)?;
        match parse_text(&text, id, &mut ctx) {
            Some(docs) => parsed.push((id, docs)),
            None => continue,
        }
    }
    if let Some(e) = ComposeError::from_list(std::mem::take(&mut ctx.errors)) {
        return Err(e);
    }
    let name = project_name(opts, &ctx.env, &parsed, &project_dir)?;
    ctx.env
        .entry("COMPOSE_PROJECT_NAME".into())
        .or_insert_with(|| name.clone());

    let mut merged = Value::Object(Map::new());
    for (id, docs) in parsed {
        let base_dir = ctx.sources.files[id]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        ctx.stack.push(ctx.sources.files[id].clone());
        for (doc, positions) in docs {
            let mut doc = process_doc(doc, positions, id, &base_dir, &project_dir, &mut ctx);
            merge_doc(&mut merged, &mut doc);
        }
        ctx.stack.pop();
    }
    // compose-go: a model with nothing in it (`version` aside, which it drops) is an error.
    let empty = merged
        .as_object()
        .is_some_and(|o| o.keys().all(|k| k == "version"));
    if empty && ctx.errors.is_empty() {
        let hint = Some("add a `services:` section".to_string());
        return Err(ctx.sources.error("", "empty compose file".into(), hint));
    }
    let mut seen = BTreeSet::new();
    for m in std::mem::take(&mut ctx.missing) {
        if seen.insert(m.clone()) {
            tracing::warn!("the {m:?} variable is not set, defaulting to a blank string");
        }
    }
    if !opts.skip_schema {
        super::normalize::check_resources(&merged, &ctx.sources, &mut ctx.errors);
    }
    if !opts.no_path_resolution {
        resolve_paths(&mut merged, &project_dir, &ctx.env);
    }
    Ok((merged, ctx, project_dir, files, name))
}

fn merge_doc(merged: &mut Value, doc: &mut Doc) {
    let over = std::mem::take(&mut doc.value);
    merge::merge(merged, over, &mut Vec::new(), &Tags { tags: &doc.tags });
    if merged.is_null() {
        *merged = Value::Object(Map::new());
    }
}

fn read_text(file: &Path, opts: &LoadOptions) -> Result<String, ComposeError> {
    if file.as_os_str() == "-" {
        return Ok(opts.stdin_content.clone().unwrap_or_default());
    }
    std::fs::read_to_string(file).map_err(|source| ComposeError::Read {
        path: file.to_path_buf(),
        source,
    })
}

type Positions = HashMap<String, Pos>;

/// Parses YAML; records positions; reports syntax errors into `ctx.errors`.
fn parse_text(text: &str, id: usize, ctx: &mut Ctx) -> Option<Vec<(Doc, Positions)>> {
    match yaml::parse(text) {
        Ok(docs) => Some(
            docs.into_iter()
                .map(|d| {
                    let value = if d.value.is_null() {
                        Value::Object(Map::new())
                    } else {
                        d.value
                    };
                    (
                        Doc {
                            value,
                            tags: d.tags,
                        },
                        d.positions,
                    )
                })
                .collect(),
        ),
        Err(e) => {
            ctx.errors.push(ComposeError::At {
                file: ctx.sources.display[id].clone(),
                pos: e.pos,
                key: String::new(),
                message: e.message,
                hint: None,
            });
            None
        }
    }
}

/// Interpolation, casting, schema validation, `include` and `extends` for one document.
fn process_doc(
    mut doc: Doc,
    positions: Positions,
    id: usize,
    base_dir: &Path,
    project_dir: &Path,
    ctx: &mut Ctx,
) -> Doc {
    for (p, pos) in positions {
        ctx.sources.pos.insert(p, (id, pos));
    }
    let _ = project_dir;
    if !doc.value.is_object() {
        ctx.errors.push(ctx.sources.error(
            "",
            "the top level of a compose file must be a mapping".into(),
            None,
        ));
        doc.value = Value::Object(Map::new());
        return doc;
    }
    if !ctx.opts.no_interpolate {
        let env = std::mem::take(&mut ctx.env);
        interpolate_doc(&mut doc.value, &env, ctx);
        ctx.env = env;
    }
    cast(&mut doc.value, &mut Vec::new());
    if !ctx.opts.skip_schema {
        // `!reset` values are checked as absent; only then is a copy without them needed.
        let reset = doc.tags.values().any(|t| *t == MergeTag::Reset);
        let copy = reset.then(|| {
            let mut c = doc.value.clone();
            merge::drop_reset(&mut c, &doc.tags, "");
            c
        });
        for e in schema::validate(copy.as_ref().unwrap_or(&doc.value)) {
            ctx.errors
                .push(ctx.sources.error(&e.path, e.message, e.hint));
        }
    }
    if let Some(include) = doc.value.as_object_mut().and_then(|o| o.remove("include")) {
        super::include::apply_includes(&mut doc.value, include, base_dir, ctx);
    }
    super::extends::apply_extends(&mut doc.value, &doc.tags, base_dir, ctx);
    doc
}

fn interpolate_doc(v: &mut Value, env: &Env, ctx: &mut Ctx) {
    let lookup = |k: &str| env.get(k).cloned();
    // Interpolate entry by entry so that one bad value does not hide the others. The key path
    // lives in one buffer, grown and cut back on the way; strings without `$` are left alone.
    fn walk(
        v: &mut Value,
        path: &mut String,
        lookup: &dyn Fn(&str) -> Option<String>,
        ctx: &mut Ctx,
    ) {
        let len = path.len();
        match v {
            Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    walk(x, path, lookup, ctx);
                    path.truncate(len);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter_mut().enumerate() {
                    use std::fmt::Write;
                    let _ = write!(path, "[{i}]");
                    walk(x, path, lookup, ctx);
                    path.truncate(len);
                }
            }
            Value::String(s) if !s.contains('$') => {}
            v => {
                if let Err((p, e)) = interpolate_value(v, lookup, &mut ctx.missing, path) {
                    let (message, hint) = match &e {
                        InterpolationError::InvalidTemplate { .. } => (
                            format!("invalid interpolation format: {e}"),
                            Some("you may need to escape any $ with another $".to_string()),
                        ),
                        InterpolationError::MissingRequired { variable, .. } => (
                            format!("error while interpolating: {e}"),
                            Some(format!("set {variable} in the environment or in .env")),
                        ),
                    };
                    ctx.errors.push(ctx.sources.error(&p, message, hint));
                }
            }
        }
    }
    walk(v, &mut String::new(), &lookup, ctx);
}

/// compose-go's type casts after interpolation: strings at these paths become ints/bools/floats.
fn cast(v: &mut Value, path: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                path.push(k.clone());
                cast(x, path);
                path.pop();
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                path.push("[]".into());
                cast(x, path);
                path.pop();
            }
        }
        Value::String(s) => {
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            let kind = cast_kind(&p);
            let new = match kind {
                Some(Cast::Int) => s.trim().parse::<i64>().ok().map(Value::from),
                Some(Cast::Float) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number),
                Some(Cast::Bool) => super::model::parse_bool(s).map(Value::Bool),
                None => None,
            };
            if let Some(n) = new {
                *v = n;
            }
        }
        _ => {}
    }
}

enum Cast {
    Int,
    Float,
    Bool,
}

fn cast_kind(p: &[&str]) -> Option<Cast> {
    use Cast::*;
    Some(match p {
        ["services", _, k] => match *k {
            "cpu_count" | "cpu_period" | "cpu_quota" | "cpu_rt_period" | "cpu_rt_runtime"
            | "cpu_shares" | "oom_score_adj" | "pids_limit" | "scale" => Int,
            "cpu_percent" | "cpus" => Float,
            "init" | "oom_kill_disable" | "privileged" | "read_only" | "stdin_open" | "tty" => Bool,
            _ => return None,
        },
        ["services", _, "depends_on", _, "required" | "restart"] => Bool,
        ["services", _, "deploy", "replicas"] => Int,
        [
            "services",
            _,
            "deploy",
            "update_config" | "rollback_config",
            "parallelism",
        ] => Int,
        [
            "services",
            _,
            "deploy",
            "update_config" | "rollback_config",
            "max_failure_ratio",
        ] => Float,
        ["services", _, "deploy", "restart_policy", "max_attempts"] => Int,
        [
            "services",
            _,
            "deploy",
            "placement",
            "max_replicas_per_node",
        ] => Int,
        ["services", _, "healthcheck", "retries"] => Int,
        ["services", _, "healthcheck", "disable"] => Bool,
        ["services", _, "ports", "[]", "target"] => Int,
        ["services", _, "ulimits", _] | ["services", _, "ulimits", _, "hard" | "soft"] => Int,
        ["services", _, "volumes", "[]", "read_only"] => Bool,
        ["services", _, "volumes", "[]", "volume", "nocopy"] => Bool,
        [
            "networks",
            _,
            "external" | "internal" | "attachable" | "enable_ipv4" | "enable_ipv6",
        ] => Bool,
        ["volumes" | "secrets" | "configs", _, "external"] => Bool,
        _ => return None,
    })
}

/// Why another compose file is loaded; it names the cycle when the file is already being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    Include,
    Extends,
}

/// Loads another compose file (for `include` and `extends`) with its own environment.
pub(super) fn load_other(
    file: &Path,
    env: &Env,
    via: Via,
    ctx: &mut Ctx,
) -> Option<(Value, HashMap<String, MergeTag>)> {
    if ctx.stack.iter().any(|f| f == file) {
        let chain: Vec<String> = ctx
            .stack
            .iter()
            .chain(std::iter::once(&file.to_path_buf()))
            .map(|p| p.display().to_string())
            .collect();
        // compose-go's kinds: "include cycle detected" and extends' "Circular reference".
        let message = match via {
            Via::Include => format!("include cycle detected: {}", chain.join(" -> ")),
            Via::Extends => format!("circular reference with extends: {}", chain.join(" -> ")),
        };
        ctx.errors.push(ComposeError::Invalid {
            file: file.to_path_buf(),
            key: String::new(),
            message,
        });
        return None;
    }
    let text = match read_text(file, ctx.opts) {
        Ok(t) => t,
        Err(e) => {
            ctx.errors.push(e);
            return None;
        }
    };
    let id = ctx.sources.add_file(file, &ctx.opts.working_dir);
    let docs = parse_text(&text, id, ctx)?;
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let saved_env = std::mem::replace(&mut ctx.env, env.clone());
    ctx.stack.push(file.to_path_buf());
    let mut merged = Value::Object(Map::new());
    let mut tags = HashMap::new();
    for (doc, positions) in docs {
        // Positions of another file fill gaps only: they must not shadow the main file's.
        for (p, pos) in positions {
            ctx.sources.pos.entry(p).or_insert((id, pos));
        }
        let mut doc = process_doc(doc, HashMap::new(), id, &base_dir, &base_dir, ctx);
        tags.extend(doc.tags.clone());
        merge_doc(&mut merged, &mut doc);
    }
    ctx.stack.pop();
    ctx.env = saved_env;
    Some((merged, tags))
}

/// Finds the environment (OS env, `.env` passes) and the compose files.
fn environment_and_files(opts: &LoadOptions) -> Result<(Env, Vec<PathBuf>, PathBuf), ComposeError> {
    let mut env = opts.env.clone();
    let disabled = env
        .get("COMPOSE_DISABLE_ENV_FILE")
        .and_then(|v| super::model::parse_bool(v))
        .unwrap_or(false);
    // `--env-file`, else COMPOSE_ENV_FILES (comma-separated) from the process environment, as
    // docker compose takes it for the flag's default.
    let from_env: Vec<PathBuf> = if opts.env_files.is_empty() {
        opts.env
            .get("COMPOSE_ENV_FILES")
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let explicit_env_files: Vec<PathBuf> = opts
        .env_files
        .iter()
        .chain(&from_env)
        .map(|f| opts.working_dir.join(f))
        .collect();
    // First pass: the working directory's .env, which may set COMPOSE_FILE and friends.
    if !disabled && explicit_env_files.is_empty() && opts.files.is_empty() {
        let dir = opts
            .project_directory
            .as_ref()
            .map(|d| opts.working_dir.join(d))
            .unwrap_or_else(|| opts.working_dir.clone());
        fill_from_env_file(&mut env, &dir.join(".env"), false)?;
    }
    if !disabled {
        fill_from_env_files(&mut env, &explicit_env_files)?;
    }

    // A `-f` (or COMPOSE_FILE entry) may name a git repository, as docker compose's remote
    // resource loaders allow: it is checked out (see `remote`) and its file read.
    let mut remote_dir = None;
    let mut local = |f: &Path| -> Result<PathBuf, ComposeError> {
        let s = f.to_string_lossy();
        if f.as_os_str() == "-" || !super::remote::is_remote(&s) {
            return Ok(opts.working_dir.join(f));
        }
        let file = super::remote::resolve(&s, opts.remote_cache.as_deref(), &opts.env).map_err(
            |message| ComposeError::Invalid {
                file: f.to_path_buf(),
                key: String::new(),
                message,
            },
        )?;
        remote_dir.get_or_insert_with(|| file.parent().map(Path::to_path_buf).unwrap_or_default());
        Ok(file)
    };
    let mut files: Vec<PathBuf> = if !opts.files.is_empty() {
        opts.files
            .iter()
            .map(|f| {
                if f.as_os_str() == "-" {
                    Ok(f.clone())
                } else {
                    local(f)
                }
            })
            .collect::<Result<_, _>>()?
    } else if let Some(list) = env.get("COMPOSE_FILE").filter(|s| !s.is_empty()) {
        let sep = env
            .get("COMPOSE_PATH_SEPARATOR")
            .cloned()
            .unwrap_or_else(|| ":".into());
        list.split(sep.as_str())
            .filter(|s| !s.is_empty())
            .map(|f| local(Path::new(f)))
            .collect::<Result<_, _>>()?
    } else {
        let start = opts
            .project_directory
            .as_ref()
            .map(|d| opts.working_dir.join(d))
            .unwrap_or_else(|| opts.working_dir.clone());
        let main = discover(&start)?;
        let dir = main.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut v = vec![main];
        if let Some(o) = OVERRIDE_FILES
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
        {
            v.push(o);
        }
        v
    };
    files.iter_mut().for_each(|f| {
        if f.as_os_str() != "-" {
            *f = clean_path(f);
        }
    });
    let project_dir = match (&opts.project_directory, remote_dir) {
        (Some(d), _) => clean_path(&opts.working_dir.join(d)),
        // compose-go: a remote file makes its checkout folder the project directory.
        (None, Some(d)) => d,
        (None, None) => files
            .iter()
            .find(|f| f.as_os_str() != "-")
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| opts.working_dir.clone()),
    };
    // Second pass: the project directory's .env.
    if !disabled && explicit_env_files.is_empty() {
        fill_from_env_file(&mut env, &project_dir.join(".env"), false)?;
    }
    Ok((env, files, project_dir))
}

/// Adds the variables of several required env files (`--env-file`, an `include`'s `env_file`)
/// that `env` does not have yet. As compose-go reads them: a later file overrides an earlier
/// one, and a file's `${VAR}` sees `env` first, then the earlier files.
pub(crate) fn fill_from_env_files(env: &mut Env, paths: &[PathBuf]) -> Result<(), ComposeError> {
    let mut from_files = Env::new();
    for path in paths {
        if path.is_dir() {
            return Err(ComposeError::Read {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory"),
            });
        }
        let lookup = |k: &str| env.get(k).or_else(|| from_files.get(k)).cloned();
        match dotenv::read_file(path, &lookup) {
            Ok(Some(vars)) => from_files.extend(vars),
            Ok(None) => {
                return Err(ComposeError::Read {
                    path: path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "couldn't find env file",
                    ),
                });
            }
            Err(source) => {
                return Err(ComposeError::Read {
                    path: path.clone(),
                    source,
                });
            }
        }
    }
    for (k, v) in from_files {
        env.entry(k).or_insert(v);
    }
    Ok(())
}

/// Adds the variables of an env file that `env` does not have yet.
pub(crate) fn fill_from_env_file(
    env: &mut Env,
    path: &Path,
    required: bool,
) -> Result<(), ComposeError> {
    if path.is_dir() {
        return Ok(());
    }
    let current = env.clone();
    let lookup = |k: &str| current.get(k).cloned();
    match dotenv::read_file(path, &lookup) {
        Ok(Some(vars)) => {
            for (k, v) in vars {
                env.entry(k).or_insert(v);
            }
            Ok(())
        }
        Ok(None) if !required => Ok(()),
        Ok(None) => Err(ComposeError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "couldn't find env file"),
        }),
        Err(source) => Err(ComposeError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Searches `dir` and its parents for a compose file.
pub fn discover(dir: &Path) -> Result<PathBuf, ComposeError> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let found: Vec<PathBuf> = DEFAULT_FILES
            .iter()
            .map(|n| d.join(n))
            .filter(|p| p.is_file())
            .collect();
        if let Some(first) = found.first() {
            if found.len() > 1 {
                tracing::warn!(
                    "found multiple config files with supported names: {}; using {}",
                    found
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    first.display()
                );
            }
            return Ok(first.clone());
        }
        cur = d.parent();
    }
    Err(ComposeError::NotFound {
        dir: dir.to_path_buf(),
    })
}

fn project_name(
    opts: &LoadOptions,
    env: &Env,
    parsed: &[(usize, Vec<(Doc, Positions)>)],
    project_dir: &Path,
) -> Result<String, ComposeError> {
    if let Some(n) = &opts.project_name {
        return validate_name(n);
    }
    if let Some(n) = env.get("COMPOSE_PROJECT_NAME").filter(|n| !n.is_empty()) {
        return validate_name(n);
    }
    let mut from_file = None;
    for (_, docs) in parsed {
        for (doc, _) in docs {
            if let Some(Value::String(n)) = doc.value.get("name") {
                let n = if opts.no_interpolate {
                    n.clone()
                } else {
                    super::interpolate::interpolate(n, env, &mut Vec::new()).unwrap_or_default()
                };
                if !n.is_empty() {
                    from_file = Some(n);
                }
            }
        }
    }
    if let Some(n) = from_file {
        return validate_name(&n);
    }
    Ok(normalize_name(
        &project_dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    ))
}

/// docker compose's folder-name normalisation: lowercase, keep `[a-z0-9_-]`.
pub fn normalize_name(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect::<String>()
        .trim_start_matches(['_', '-'])
        .to_string()
}

fn validate_name(s: &str) -> Result<String, ComposeError> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(s.to_string())
    } else {
        Err(ComposeError::ProjectName { name: s.into() })
    }
}

/// A minimal wrapper kept for callers of the first version: reads a `.env` file.
pub fn read_dotenv(path: &Path) -> Result<Env, ComposeError> {
    let mut env = Env::new();
    fill_from_env_file(&mut env, path, false)?;
    Ok(env)
}

fn is_remote(s: &str) -> bool {
    s.contains("://") || s.starts_with("git@") || s.starts_with("github.com/")
}

/// Makes a host path absolute against `base` (`~` is the home directory).
pub fn abs_path(s: &str, base: &Path, env: &Env) -> String {
    let p = if s == "~" {
        PathBuf::from(env.get("HOME").cloned().unwrap_or_default())
    } else if let Some(rest) = s.strip_prefix("~/") {
        PathBuf::from(env.get("HOME").cloned().unwrap_or_default()).join(rest)
    } else {
        base.join(s)
    };
    clean_path(&p).to_string_lossy().into_owned()
}

fn is_bind_source(s: &str) -> bool {
    s.starts_with('.') || s.starts_with('/') || s.starts_with('~')
}

/// Resolves relative host paths of a (merged or included) model against `base`.
pub fn resolve_paths(v: &mut Value, base: &Path, env: &Env) {
    let Some(root) = v.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(services)) = root.get_mut("services") {
        for svc in services.values_mut() {
            let Some(svc) = svc.as_object_mut() else {
                continue;
            };
            match svc.get_mut("build") {
                Some(Value::String(c)) if !is_remote(c) => *c = abs_path(c, base, env),
                Some(Value::Object(b)) => {
                    if let Some(Value::String(c)) = b.get_mut("context")
                        && !is_remote(c)
                    {
                        *c = abs_path(c, base, env);
                    }
                    if let Some(Value::Object(ac)) = b.get_mut("additional_contexts") {
                        for c in ac.values_mut() {
                            if let Value::String(c) = c
                                && is_bind_source(c)
                            {
                                *c = abs_path(c, base, env);
                            }
                        }
                    }
                }
                _ => {}
            }
            for key in ["env_file", "label_file"] {
                match svc.get_mut(key) {
                    Some(Value::String(p)) => *p = abs_path(p, base, env),
                    Some(Value::Array(items)) => {
                        for i in items {
                            match i {
                                Value::String(p) => *p = abs_path(p, base, env),
                                Value::Object(o) => {
                                    if let Some(Value::String(p)) = o.get_mut("path") {
                                        *p = abs_path(p, base, env);
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let Some(Value::Array(vols)) = svc.get_mut("volumes") {
                for vol in vols {
                    match vol {
                        Value::String(s) => {
                            if let Some((src, rest)) = s.split_once(':')
                                && is_bind_source(src)
                            {
                                *s = format!("{}:{rest}", abs_path(src, base, env));
                            }
                        }
                        Value::Object(o) => {
                            let bind = o.get("type").and_then(Value::as_str) == Some("bind");
                            if bind && let Some(Value::String(src)) = o.get_mut("source") {
                                *src = abs_path(src, base, env);
                            }
                        }
                        _ => {}
                    }
                }
            }
            if let Some(Value::Object(dev)) = svc.get_mut("develop")
                && let Some(Value::Array(watch)) = dev.get_mut("watch")
            {
                for w in watch {
                    if let Some(Value::String(p)) = w.get_mut("path") {
                        *p = abs_path(p, base, env);
                    }
                }
            }
        }
    }
    for top in ["secrets", "configs"] {
        if let Some(Value::Object(items)) = root.get_mut(top) {
            for item in items.values_mut() {
                if let Some(Value::String(f)) = item.get_mut("file") {
                    *f = abs_path(f, base, env);
                }
            }
        }
    }
}

/// Lexically removes `.` and `..` components (no symlink resolution).
pub fn clean_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::ComposeError;

    fn load_str(yaml: &str) -> Result<Project, ComposeError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("My App");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("compose.yaml"), yaml).unwrap();
        load(&LoadOptions {
            working_dir: p,
            ..Default::default()
        })
    }

    #[test]
    fn hello_example_loads() {
        let p = load_str(
            "x-base: &b\n  image: busybox\nservices:\n  web:\n    <<: *b\n    ports: ['18080:8080']\n    volumes: [site:/www, ./conf:/conf:ro]\n  client:\n    <<: *b\n    depends_on: [web]\n    command: sh -c 'echo hi'\nvolumes:\n  site:\n",
        )
        .unwrap();
        assert_eq!(p.name, "myapp");
        assert_eq!(
            p.services["web"].ports[0].published.as_deref(),
            Some("18080")
        );
        assert_eq!(p.services["client"].command.as_ref().unwrap()[2], "echo hi");
        assert_eq!(p.volumes["site"].name.as_deref(), Some("myapp_site"));
        assert_eq!(p.networks["default"].name.as_deref(), Some("myapp_default"));
        assert!(
            p.services["web"].volumes[1]
                .source
                .as_ref()
                .unwrap()
                .ends_with("My App/conf")
        );
    }

    #[test]
    fn unknown_key_is_reported_with_its_position() {
        let e = load_str("services:\n  web:\n    image: busybox\n    prots: ['80']\n").unwrap_err();
        let msg = e.to_string();
        assert_eq!(
            msg,
            "compose.yaml:4:5: services.web.prots: unknown key \"prots\""
        );
        assert_eq!(e.hint().as_deref(), Some("did you mean \"ports\"?"));
    }

    #[test]
    fn yaml_syntax_error_has_line_and_column() {
        let e = load_str("services:\n  web:\n    image: [busybox\n").unwrap_err();
        assert!(e.to_string().starts_with("compose.yaml:"), "{e}");
    }

    #[test]
    fn all_errors_are_reported_together() {
        let e = load_str(
            "services:\n  a:\n    image: x\n    ports: [\"80:80\"]\n    tty: [maybe]\n  b:\n    image: y\n    volumes: 5\n",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("compose.yaml:5:5: services.a.tty"), "{msg}");
        assert!(
            msg.contains("compose.yaml:8:5: services.b.volumes"),
            "{msg}"
        );
    }

    #[test]
    fn errors_in_an_override_file_point_into_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "services:\n  web:\n    image: x\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            "services:\n  web:\n    ports:\n      - \"80:80\"\n      - 'http:80'\n",
        )
        .unwrap();
        let e = load(&LoadOptions {
            files: vec!["a.yaml".into(), "b.yaml".into()],
            working_dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("b.yaml:5:9: services.web.ports[1]: "),
            "{e}"
        );
    }

    #[test]
    fn stdin_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = load(&LoadOptions {
            files: vec!["-".into()],
            stdin_content: Some("services:\n  web:\n    image: x\n".into()),
            working_dir: dir.path().to_path_buf(),
            project_name: Some("p".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.services["web"].image.as_deref(), Some("x"));
    }

    #[test]
    fn undefined_volume_and_dependency() {
        let e = load_str(
            "services:\n  a:\n    image: x\n    volumes: [nope:/d]\n    depends_on: [b]\n",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("undefined volume"), "{msg}");
        assert!(msg.contains("undefined service"), "{msg}");
        assert!(
            msg.contains("compose.yaml:4:15: services.a.volumes[0]"),
            "{msg}"
        );
    }

    #[test]
    fn start_interval_without_start_period_fails_only_container_creation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "services:\n  ok:\n    image: x\n    healthcheck:\n      start_period: 0s\n      start_interval: 1s\n  bad:\n    image: x\n    healthcheck:\n      interval: 30s\n      start_interval: 1s\n",
        )
        .unwrap();
        let opts = |create_checks: bool, services: &[&str]| LoadOptions {
            working_dir: dir.path().to_path_buf(),
            create_checks,
            enabled_services: services.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        // `config` shows the file; `up ok` makes only `ok`, whose start_period is set.
        load(&opts(false, &[])).unwrap();
        load(&opts(true, &["ok"])).unwrap();
        for services in [&[][..], &["bad"]] {
            let msg = load(&opts(true, services)).unwrap_err().to_string();
            assert!(
                msg.contains("compose.yaml:11:7: services.bad.healthcheck.start_interval: healthcheck.start_interval requires healthcheck.start_period to be set"),
                "{msg}"
            );
        }
    }
}
