//! From the merged JSON model to the typed, canonical `Project`: typed deserialization (each
//! service and resource on its own, so every error is reported), profiles, `env_file` and
//! environment resolution, the implicit `default` network, implicit dependencies, resource
//! names, and the semantic checks of compose-go's validator.
use super::dotenv;
use super::error::ComposeError;
use super::interpolate::Env;
use super::loader::{LoadOptions, Sources};
use super::model::{ComposeFile, DependsOn, FileObject, Network, Project, Service, VolumeType};
use super::units;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Keys whose children are names chosen by the user (a service may be called `x-foo`).
const NAME_MAPS: [&str; 22] = [
    "services",
    "networks",
    "volumes",
    "secrets",
    "configs",
    "models",
    "environment",
    "labels",
    "annotations",
    "depends_on",
    "extra_hosts",
    "sysctls",
    "args",
    "ulimits",
    "options",
    "driver_opts",
    "additional_contexts",
    "ssh",
    "aux_addresses",
    "storage_opt",
    "tmpfs",
    "deploy_labels",
];

/// Drops `x-*` extension keys: they are for anchors and tools, not for the typed model. Keys of
/// maps of user-chosen names are kept.
pub fn strip_extensions(v: &mut Value) {
    strip(v, false);
}

fn strip(v: &mut Value, names: bool) {
    match v {
        Value::Object(o) => {
            if !names {
                o.retain(|k, _| !k.starts_with("x-"));
            }
            for (k, x) in o.iter_mut() {
                strip(x, !names && NAME_MAPS.contains(&k.as_str()));
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, false)),
        _ => {}
    }
}

fn typed<T: DeserializeOwned + Default>(
    v: Value,
    prefix: &str,
    sources: &Sources,
    errors: &mut Vec<ComposeError>,
) -> Option<T> {
    if v.is_null() {
        return Some(T::default());
    }
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let inner = e.path().to_string();
            let mut path = if inner == "." || inner.is_empty() {
                prefix.to_string()
            } else if inner.starts_with('[') {
                format!("{prefix}{inner}")
            } else {
                format!("{prefix}.{inner}")
            };
            let mut message = e.into_inner().to_string();
            // `@i@message`: the error is about item i of the list at `path`.
            if let Some(rest) = message.strip_prefix('@')
                && let Some((i, m)) = rest.split_once('@')
                && i.parse::<usize>().is_ok()
            {
                path = format!("{path}[{i}]");
                message = m.to_string();
            }
            errors.push(sources.error(&path, message, None));
            None
        }
    }
}

fn typed_map<T: DeserializeOwned + Default>(
    v: Option<Value>,
    top: &str,
    sources: &Sources,
    errors: &mut Vec<ComposeError>,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(m)) = v {
        for (k, x) in m {
            if let Some(t) = typed(x, &format!("{top}.{k}"), sources, errors) {
                out.insert(k, t);
            }
        }
    }
    out
}

/// compose-go's `validation` package: checks on the merged model as written, run with the
/// schema and before paths are resolved (so `--no-consistency` keeps them): an external volume sets nothing but `name`;
/// a config has one of file, environment, content (a secret: file, environment) unless
/// external or driven; a published port's host_ip is an IP; a watch path is not blank;
/// a device request has `count` or `device_ids`, not both.
pub(super) fn check_resources(v: &Value, sources: &Sources, errors: &mut Vec<ComposeError>) {
    let entries = |top: &str| -> Vec<(String, &Map<String, Value>)> {
        v.get(top)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, x)| x.as_object().map(|o| (k.clone(), o)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let external = |o: &Map<String, Value>| match o.get("external") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Object(_)) => true,
        _ => false,
    };
    for (key, o) in entries("volumes") {
        if !external(o) {
            continue;
        }
        if let Some(k) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "name" | "external") && !k.starts_with("x-"))
        {
            errors.push(sources.error(
                &format!("volumes.{key}.{k}"),
                format!("volumes.{key}: conflicting parameters \"external\" and {k:?} specified"),
                Some("an external volume already exists: it takes only `name`".into()),
            ));
        }
    }
    for (top, keys) in [
        ("configs", &["file", "environment", "content"][..]),
        ("secrets", &["file", "environment"][..]),
    ] {
        for (key, o) in entries(top) {
            let n = keys.iter().filter(|k| o.contains_key(**k)).count();
            let exempt = o.contains_key("driver") || external(o) || o.contains_key("external");
            let message = if n > 1 {
                format!(
                    "{top}.{key}: {} attributes are mutually exclusive",
                    keys.join("|")
                )
            } else if n == 0 && !exempt {
                format!("{top}.{key}: one of {} must be set", keys.join("|"))
            } else {
                continue;
            };
            errors.push(sources.error(&format!("{top}.{key}"), message, None));
        }
    }
    for (name, svc) in entries("services") {
        for (i, port) in svc
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(ip) = port.get("host_ip").and_then(Value::as_str)
                && ip.parse::<std::net::IpAddr>().is_err()
            {
                errors.push(sources.error(
                    &format!("services.{name}.ports[{i}].host_ip"),
                    format!("invalid ip address: {ip}"),
                    None,
                ));
            }
        }
        let watch = svc
            .get("develop")
            .and_then(|d| d.get("watch"))
            .and_then(Value::as_array);
        for (i, w) in watch.into_iter().flatten().enumerate() {
            if w.get("path").and_then(Value::as_str) == Some("") {
                errors.push(sources.error(
                    &format!("services.{name}.develop.watch[{i}].path"),
                    "value can't be blank".into(),
                    None,
                ));
            }
        }
        let devices = svc
            .get("deploy")
            .and_then(|d| d.get("resources"))
            .and_then(|r| r.get("reservations"))
            .and_then(|r| r.get("devices"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, d)| (format!("deploy.resources.reservations.devices[{i}]"), d));
        let gpus = svc
            .get("gpus")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, d)| (format!("gpus[{i}]"), d));
        for (path, d) in devices.chain(gpus) {
            if d.get("count").is_some() && d.get("device_ids").is_some() {
                errors.push(sources.error(
                    &format!("services.{name}.{path}"),
                    "\"count\" and \"device_ids\" attributes are exclusive".into(),
                    None,
                ));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build_project(
    mut value: Value,
    name: String,
    project_dir: PathBuf,
    files: Vec<PathBuf>,
    env: Env,
    sources: &Sources,
    opts: &LoadOptions,
    errors: &mut Vec<ComposeError>,
) -> Option<Project> {
    strip_extensions(&mut value);
    let Value::Object(mut root) = value else {
        return None;
    };
    let mut services = BTreeMap::new();
    if let Some(Value::Object(m)) = root.remove("services") {
        for (k, v) in m {
            let v = if v.is_null() {
                Value::Object(Map::new())
            } else {
                v
            };
            if let Some(mut s) = typed::<Service>(v, &format!("services.{k}"), sources, errors) {
                s.name = k.clone();
                services.insert(k, s);
            }
        }
    }
    let networks = typed_map::<Network>(root.remove("networks"), "networks", sources, errors);
    let volumes = typed_map(root.remove("volumes"), "volumes", sources, errors);
    let secrets = typed_map::<FileObject>(root.remove("secrets"), "secrets", sources, errors);
    let configs = typed_map::<FileObject>(root.remove("configs"), "configs", sources, errors);
    let file = ComposeFile {
        name: None,
        version: root.remove("version"),
        services: services.into_iter().collect(),
        networks,
        volumes,
        secrets,
        configs,
        models: match root.remove("models") {
            Some(Value::Object(m)) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        },
    };
    if file.version.is_some() {
        tracing::warn!("the attribute `version` is obsolete, it will be ignored");
    }
    let mut project = Project {
        name,
        working_dir: project_dir,
        compose_files: files,
        services: file.services.into_iter().collect(),
        networks: file.networks,
        volumes: file.volumes,
        secrets: file.secrets,
        configs: file.configs,
        models: file.models,
        disabled_services: BTreeMap::new(),
        environment: env,
        profiles: Vec::new(),
    };
    apply_profiles(&mut project, opts);
    // Services named on the command line narrow the project as docker compose's
    // WithSelectedServices does: the env files of the others are not needed, so a missing one
    // is no error (`up a` works while b's env file is absent).
    let selected =
        (!opts.enabled_services.is_empty()).then(|| selection(&project, &opts.enabled_services));
    let env_files = EnvFiles {
        resolve: !opts.no_env_resolution,
        selected: selected.as_ref(),
    };
    normalize(&mut project, &env_files, sources, errors);
    if !opts.skip_consistency {
        validate(&project, sources, errors);
        // docker compose checks this in `config` and when it creates containers (`up`,
        // `create`, `run`), not in commands that only read the project (`down`, `ps`, …, which
        // load without env files), so `down` still works on such a file.
        if opts.create_checks || !opts.no_env_resolution {
            container_names_unique(&project, selected.as_ref(), sources, errors);
        }
    }
    if opts.create_checks {
        create_checks(&project, selected.as_ref(), sources, errors);
    }
    Some(project)
}

/// What docker compose refuses only when it creates a service's containers (so `config` shows
/// such a file): a healthcheck `start_interval` without `start_period`, which the engine
/// would ignore (moby/moby#48874). Same message as docker compose.
fn create_checks(
    p: &Project,
    selected: Option<&BTreeSet<String>>,
    sources: &Sources,
    errors: &mut Vec<ComposeError>,
) {
    for (name, svc) in &p.services {
        if selected.is_some_and(|s| !s.contains(name)) {
            continue;
        }
        if let Some(h) = &svc.healthcheck
            && h.start_interval.is_some()
            && h.start_period.is_none()
        {
            errors.push(sources.error(
                &format!("services.{name}.healthcheck.start_interval"),
                "healthcheck.start_interval requires healthcheck.start_period to be set".into(),
                Some(
                    "add a start_period (the time during which checks run every start_interval)"
                        .into(),
                ),
            ));
        }
    }
}

/// Active profiles: `--profile` plus `COMPOSE_PROFILES`; `*` enables all.
fn apply_profiles(p: &mut Project, opts: &LoadOptions) {
    let mut active: Vec<String> = opts.profiles.clone();
    if let Some(v) = p.environment.get("COMPOSE_PROFILES") {
        active.extend(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    active.sort();
    active.dedup();
    let all = active.iter().any(|a| a == "*");
    let (enabled, disabled): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut p.services)
        .into_iter()
        .partition(|(_, s)| {
            s.profiles.is_empty() || all || s.profiles.iter().any(|x| active.contains(x))
        });
    p.services = enabled;
    p.disabled_services = disabled;
    p.profiles = active;
    p.enable_services(&opts.enabled_services);
}

impl Project {
    /// Enables services named on the command line even when their profile is not active
    /// (docker compose does this for `up svc`, `run svc`, …), with their dependencies.
    pub fn enable_services(&mut self, names: &[String]) {
        let mut todo: Vec<String> = names.to_vec();
        while let Some(n) = todo.pop() {
            if let Some(s) = self.disabled_services.remove(&n) {
                todo.extend(s.depends_on.keys().cloned());
                self.services.insert(n, s);
            }
        }
    }

    /// Every profile named by a service, sorted.
    pub fn all_profiles(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .services
            .values()
            .chain(self.disabled_services.values())
            .flat_map(|s| s.profiles.iter())
            .collect();
        set.into_iter().cloned().collect()
    }
}

fn implicit_dep(svc: &mut Service, dep: &str, restart: bool) {
    svc.depends_on.entry(dep.to_string()).or_insert(DependsOn {
        condition: "service_started".into(),
        required: true,
        restart,
    });
}

/// The services named and everything they need (depends_on, links, volumes_from, `service:`
/// namespaces), transitively.
fn selection(p: &Project, names: &[String]) -> BTreeSet<String> {
    let mut keep = BTreeSet::new();
    let mut todo: Vec<String> = names.to_vec();
    while let Some(n) = todo.pop() {
        if !keep.insert(n.clone()) {
            continue;
        }
        let Some(s) = p.services.get(&n) else {
            continue;
        };
        todo.extend(s.depends_on.keys().cloned());
        let first = |v: &String| v.split(':').next().unwrap_or(v).to_string();
        todo.extend(s.links.iter().map(first));
        todo.extend(
            s.volumes_from
                .iter()
                .filter(|v| !v.starts_with("container:"))
                .map(first),
        );
        let namespaces = [&s.network_mode, &s.ipc, &s.pid, &s.uts, &s.cgroup];
        todo.extend(
            namespaces
                .into_iter()
                .flatten()
                .filter_map(|ns| ns.strip_prefix("service:").map(String::from)),
        );
    }
    keep
}

/// How services' env files are resolved.
struct EnvFiles<'a> {
    /// False for `config --no-env-resolution`.
    resolve: bool,
    /// When services were named: only theirs must exist.
    selected: Option<&'a BTreeSet<String>>,
}

fn normalize(
    p: &mut Project,
    env_files: &EnvFiles,
    sources: &Sources,
    errors: &mut Vec<ComposeError>,
) {
    let env = p.environment.clone();
    let mut uses_default = false;
    for (name, svc) in p.services.iter_mut() {
        // environment: env_file values first (later files win), then `environment:`, then the
        // bare `KEY` entries from the project environment; unresolved bare keys are dropped.
        let mut resolved: BTreeMap<String, Option<String>> = BTreeMap::new();
        let needed = env_files.selected.is_none_or(|s| s.contains(name));
        for (i, f) in svc.env_file.iter().enumerate() {
            if !env_files.resolve {
                break;
            }
            let path = Path::new(&f.path);
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(_) if !f.required || !needed => continue,
                Err(e) => {
                    errors.push(sources.error(
                        &format!("services.{name}.env_file[{i}]"),
                        format!("env file {} not found: {e}", path.display()),
                        Some("create the file, or mark it `required: false`".into()),
                    ));
                    continue;
                }
            };
            let vars = if f.format.as_deref() == Some("raw") {
                raw_env(&text)
            } else {
                let lookup = |k: &str| env.get(k).cloned();
                match dotenv::parse(&text, &lookup) {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(sources.error(
                            &format!("services.{name}.env_file[{i}]"),
                            format!("failed to read {}: {e}", path.display()),
                            None,
                        ));
                        continue;
                    }
                }
            };
            resolved.extend(vars.into_iter().map(|(k, v)| (k, Some(v))));
        }
        if !env_files.resolve {
            resolved = std::mem::take(&mut svc.environment);
        }
        for (k, v) in std::mem::take(&mut svc.environment) {
            let v = match v {
                Some(v) => Some(v),
                None => env.get(&k).cloned(),
            };
            match v {
                Some(v) => {
                    resolved.insert(k, Some(v));
                }
                None => {
                    resolved.remove(&k);
                }
            }
        }
        svc.environment = if env_files.resolve {
            resolved.into_iter().filter(|(_, v)| v.is_some()).collect()
        } else {
            resolved
        };

        if svc.networks.is_empty() && svc.network_mode.is_none() {
            svc.networks.insert("default".into(), Default::default());
        }
        if svc.networks.contains_key("default") {
            uses_default = true;
        }
        // Implicit dependencies.
        let links: Vec<String> = svc
            .links
            .iter()
            .map(|l| l.split(':').next().unwrap_or(l).to_string())
            .collect();
        for l in links {
            implicit_dep(svc, &l, false);
        }
        for ns in [
            svc.network_mode.clone(),
            svc.ipc.clone(),
            svc.pid.clone(),
            svc.uts.clone(),
            svc.cgroup.clone(),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(dep) = ns.strip_prefix("service:") {
                implicit_dep(svc, dep, true);
            }
        }
        let vf: Vec<String> = svc
            .volumes_from
            .iter()
            .filter(|v| !v.starts_with("container:"))
            .map(|v| v.split(':').next().unwrap_or(v).to_string())
            .collect();
        for v in vf {
            implicit_dep(svc, &v, false);
        }
        // Legacy keys into deploy.resources.
        if let Some(deploy) = &svc.deploy
            && let Some(r) = deploy.replicas
            && svc.scale.is_none()
        {
            svc.scale = Some(r);
        }
        canonical_units(svc, sources, errors);
        for v in svc.volumes.iter_mut() {
            v.target = super::loader::clean_path(Path::new(&v.target))
                .to_string_lossy()
                .into_owned();
        }
    }
    if uses_default {
        p.networks.entry("default".into()).or_default();
    }
    let project = p.name.clone();
    for (key, net) in p.networks.iter_mut() {
        set_resource_name(&mut net.name, net.external, &project, key);
    }
    for (key, vol) in p.volumes.iter_mut() {
        set_resource_name(&mut vol.name, vol.external, &project, key);
    }
    for (key, s) in p.secrets.iter_mut().chain(p.configs.iter_mut()) {
        set_resource_name(&mut s.name, s.external, &project, key);
    }
}

/// `format: raw` env files: `KEY=VALUE` lines, no quotes, no interpolation.
fn raw_env(text: &str) -> Env {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

fn set_resource_name(name: &mut Option<String>, external: bool, project: &str, key: &str) {
    if name.is_none() {
        *name = Some(if external {
            key.to_string()
        } else {
            format!("{project}_{key}")
        });
    }
}

/// Parses a byte size like `512m`, `1g`, `1.5GB` or `1024` (see `units`); negative sizes are
/// `None`.
pub fn parse_bytes(s: &str) -> Option<u64> {
    units::parse_bytes(s.trim())
        .ok()
        .and_then(|n| u64::try_from(n).ok())
}

/// Parses a duration like `1m30s`, `500ms`, `1h` or `2d` (see `units`); negative durations are
/// `None`.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    units::parse_duration(s.trim())
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .map(std::time::Duration::from_nanos)
}

/// Rewrites a duration or byte size in place in its canonical form (`1m30s`, `536870912`), as
/// compose-go's typed model prints them; a value that does not parse is an error at `path`.
fn canonical(
    slot: &mut Option<String>,
    path: &str,
    form: fn(&str) -> Result<String, String>,
    sources: &Sources,
    errors: &mut Vec<ComposeError>,
) {
    if let Some(v) = slot.as_mut() {
        match form(v) {
            Ok(c) => *v = c,
            Err(e) => errors.push(sources.error(path, e, None)),
        }
    }
}

/// The same for a value inside an untyped part of the model (`deploy.update_config`, …).
fn canonical_value(
    v: Option<&mut Value>,
    path: &str,
    form: fn(&str) -> Result<String, String>,
    sources: &Sources,
    errors: &mut Vec<ComposeError>,
) {
    let mut s = match v.as_deref() {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    canonical(&mut s, path, form, sources, errors);
    if let (Some(v), Some(s)) = (v, s) {
        *v = Value::String(s);
    }
}

/// Durations and byte sizes of a service in canonical form.
fn canonical_units(svc: &mut Service, sources: &Sources, errors: &mut Vec<ComposeError>) {
    let dur = units::canonical_duration;
    let bytes = units::canonical_bytes;
    let name = svc.name.clone();
    let at = |k: &str| format!("services.{name}.{k}");
    let (sv, e) = (sources, &mut *errors);
    canonical(
        &mut svc.stop_grace_period,
        &at("stop_grace_period"),
        dur,
        sv,
        e,
    );
    for (slot, key) in [
        (&mut svc.mem_limit, "mem_limit"),
        (&mut svc.mem_reservation, "mem_reservation"),
        (&mut svc.memswap_limit, "memswap_limit"),
        (&mut svc.shm_size, "shm_size"),
    ] {
        canonical(slot, &at(key), bytes, sv, e);
    }
    if let Some(b) = svc.build.as_mut() {
        canonical(&mut b.shm_size, &at("build.shm_size"), bytes, sv, e);
    }
    if let Some(h) = svc.healthcheck.as_mut() {
        for (slot, key) in [
            (&mut h.interval, "interval"),
            (&mut h.timeout, "timeout"),
            (&mut h.start_period, "start_period"),
            (&mut h.start_interval, "start_interval"),
        ] {
            canonical(slot, &at(&format!("healthcheck.{key}")), dur, sv, e);
        }
    }
    for (i, v) in svc.volumes.iter_mut().enumerate() {
        if let Some(t) = v.tmpfs.as_mut() {
            canonical(
                &mut t.size,
                &at(&format!("volumes[{i}].tmpfs.size")),
                bytes,
                sv,
                e,
            );
        }
    }
    if let Some(Value::Object(blkio)) = svc.blkio_config.as_mut() {
        for key in ["device_read_bps", "device_write_bps"] {
            if let Some(Value::Array(devices)) = blkio.get_mut(key) {
                for (i, d) in devices.iter_mut().enumerate() {
                    let path = at(&format!("blkio_config.{key}[{i}].rate"));
                    canonical_value(d.get_mut("rate"), &path, bytes, sv, e);
                }
            }
        }
    }
    let Some(d) = svc.deploy.as_mut() else {
        return;
    };
    if let Some(r) = d.restart_policy.as_mut() {
        canonical(&mut r.delay, &at("deploy.restart_policy.delay"), dur, sv, e);
        canonical(
            &mut r.window,
            &at("deploy.restart_policy.window"),
            dur,
            sv,
            e,
        );
    }
    for (cfg, key) in [
        (&mut d.update_config, "update_config"),
        (&mut d.rollback_config, "rollback_config"),
    ] {
        if let Some(c) = cfg.as_mut() {
            for k in ["delay", "monitor"] {
                let path = at(&format!("deploy.{key}.{k}"));
                canonical_value(c.get_mut(k), &path, dur, sv, e);
            }
        }
    }
    if let Some(r) = d.resources.as_mut() {
        for (l, key) in [
            (&mut r.limits, "limits"),
            (&mut r.reservations, "reservations"),
        ] {
            if let Some(l) = l.as_mut() {
                let path = at(&format!("deploy.resources.{key}.memory"));
                canonical(&mut l.memory, &path, bytes, sv, e);
            }
        }
    }
}

/// compose-go's checks of `build:`: dockerfile vs dockerfile_inline, `service:` additional
/// contexts, `platforms` vs `platform`, build secrets.
fn check_build(
    p: &Project,
    name: &str,
    svc: &Service,
    sources: &Sources,
    errors: &mut Vec<ComposeError>,
) {
    let Some(b) = &svc.build else { return };
    let at = |k: &str| format!("services.{name}.build{k}");
    if b.dockerfile.is_some() && b.dockerfile_inline.is_some() {
        errors.push(sources.error(
            &at(".dockerfile_inline"),
            format!(
                "service {name:?} declares mutually exclusive dockerfile and dockerfile_inline"
            ),
            Some("keep one of them".into()),
        ));
    }
    for (ctx, c) in &b.additional_contexts {
        let Some(target) = c.strip_prefix("service:") else {
            continue;
        };
        let why = match p.services.get(target) {
            None => format!(
                "service {name:?} declares unknown service {target:?} as additional context {ctx}"
            ),
            Some(t) if t.build.is_none() => format!(
                "service {name:?} declares non-buildable service {target:?} as additional context {ctx}"
            ),
            Some(_) => continue,
        };
        errors.push(sources.error(&at(&format!(".additional_contexts.{ctx}")), why, None));
    }
    if let Some(platform) = &svc.platform
        && !b.platforms.is_empty()
        && !b.platforms.contains(platform)
    {
        errors.push(sources.error(
            &at(".platforms"),
            // docker compose's e2e test checks these words.
            format!("service.build.platforms MUST include service.platform {platform:?}"),
            None,
        ));
    }
    for (i, r) in b.secrets.iter().enumerate() {
        if !p.secrets.contains_key(&r.source) {
            errors.push(sources.error(
                &at(&format!(".secrets[{i}]")),
                format!(
                    "service {name:?} refers to undefined build secret {:?}",
                    r.source
                ),
                Some("declare it under the top-level `secrets:` key".into()),
            ));
        }
    }
}

/// The models a service names (`models:` is a list or a map).
fn service_models(svc: &Service) -> Vec<String> {
    match &svc.models {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|m| m.as_str().map(String::from))
            .collect(),
        Some(Value::Object(o)) => o.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// docker compose's CheckContainerNameUnicity (run by `config` and `create`/`up` on the
/// services they act on): two services cannot share a `container_name`.
fn container_names_unique(
    p: &Project,
    selected: Option<&BTreeSet<String>>,
    sources: &Sources,
    errors: &mut Vec<ComposeError>,
) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, svc) in &p.services {
        if selected.is_some_and(|s| !s.contains(name)) {
            continue;
        }
        let Some(c) = svc.container_name.as_deref() else {
            continue;
        };
        if let Some(other) = seen.insert(c, name) {
            errors.push(sources.error(
                &format!("services.{name}.container_name"),
                format!("container name {c:?} is already in use by service {other}"),
                Some("container names are unique on the host: give each service its own".into()),
            ));
        }
    }
}

fn validate(p: &Project, sources: &Sources, errors: &mut Vec<ComposeError>) {
    for (name, svc) in &p.services {
        let at = |k: &str| format!("services.{name}{k}");
        if svc.image.is_none() && svc.build.is_none() && svc.provider.is_none() {
            errors.push(sources.error(
                &at(""),
                format!("service {name:?} has neither an image nor a build context specified"),
                Some("add `image:` or `build:` to the service".into()),
            ));
        }
        check_build(p, name, svc, sources, errors);
        if let Some(test) = svc.healthcheck.as_ref().and_then(|h| h.test.as_ref())
            && let Some(first) = test.first()
            && !matches!(first.as_str(), "CMD" | "CMD-SHELL" | "NONE")
        {
            errors.push(sources.error(
                &at(".healthcheck.test"),
                format!("healthcheck.test must start with \"CMD\", \"CMD-SHELL\" or \"NONE\", not {first:?}"),
                Some("write the command as a string, or as a list after \"CMD\"".into()),
            ));
        }
        for (i, w) in svc.develop.iter().flat_map(|d| d.watch.iter()).enumerate() {
            if w.target.is_none() && !matches!(w.action.as_str(), "rebuild" | "restart") {
                errors.push(sources.error(
                    &at(&format!(".develop.watch[{i}]")),
                    format!(
                        "develop.watch: target is required for the {:?} action",
                        w.action
                    ),
                    None,
                ));
            }
        }
        for model in service_models(svc) {
            if !p.models.contains_key(&model) {
                errors.push(sources.error(
                    &at(".models"),
                    format!("service {name:?} refers to undefined model {model:?}"),
                    Some("declare it under the top-level `models:` key".into()),
                ));
            }
        }
        let replicas = svc.deploy.as_ref().and_then(|d| d.replicas);
        for (key, v) in [("scale", svc.scale), ("deploy.replicas", replicas)] {
            if let Some(v) = v.filter(|v| *v < 0) {
                errors.push(sources.error(
                    &at(&format!(".{key}")),
                    format!("{key} must be greater than or equal to 0, not {v}"),
                    None,
                ));
            }
        }
        if svc.network_mode.is_some() && !svc.networks.is_empty() {
            errors.push(sources.error(
                &at(".network_mode"),
                "network_mode and networks cannot be combined".into(),
                None,
            ));
        }
        for net in svc.networks.keys() {
            if !p.networks.contains_key(net) {
                errors.push(sources.error(
                    &at(&format!(".networks.{net}")),
                    format!("service {name:?} refers to undefined network {net:?}"),
                    Some("declare it under the top-level `networks:` key".to_string()),
                ));
            }
        }
        let mut targets = BTreeSet::new();
        for (i, t) in svc.tmpfs.iter().enumerate() {
            let path = t.split(':').next().unwrap_or(t);
            if !targets.insert(path.to_string()) {
                errors.push(sources.error(
                    &at(&format!(".tmpfs[{i}]")),
                    format!("duplicate mount target {path:?}"),
                    None,
                ));
            }
        }
        for (i, vol) in svc.volumes.iter().enumerate() {
            if vol.kind == VolumeType::Volume
                && let Some(src) = &vol.source
                && !p.volumes.contains_key(src)
            {
                errors.push(sources.error(
                    &at(&format!(".volumes[{i}]")),
                    format!("service {name:?} refers to undefined volume {src:?}"),
                    Some("declare it under the top-level `volumes:` key".into()),
                ));
            }
            if !targets.insert(vol.target.clone()) {
                errors.push(sources.error(
                    &at(&format!(".volumes[{i}]")),
                    format!("duplicate mount target {:?}", vol.target),
                    None,
                ));
            }
        }
        for (kind, refs, defs) in [
            ("secret", &svc.secrets, &p.secrets),
            ("config", &svc.configs, &p.configs),
        ] {
            for (i, r) in refs.iter().enumerate() {
                if !defs.contains_key(&r.source) {
                    errors.push(sources.error(
                        &at(&format!(".{kind}s[{i}]")),
                        format!("service {name:?} refers to undefined {kind} {:?}", r.source),
                        Some(format!("declare it under the top-level `{kind}s:` key")),
                    ));
                }
            }
        }
        for (dep, d) in &svc.depends_on {
            if dep == name {
                // compose-go's wording: a self-dependency is the shortest cycle.
                errors.push(sources.error(
                    &at(".depends_on"),
                    format!("dependency cycle detected: {name} -> {name}"),
                    Some(format!("service {name:?} depends on itself")),
                ));
            } else if !p.services.contains_key(dep) {
                // compose-go: only a dependency disabled by its profile may be optional; an
                // undefined one is an error even with `required: false`.
                let disabled = p.disabled_services.contains_key(dep);
                let why = if !disabled {
                    format!("service {name:?} depends on undefined service {dep:?}")
                } else if d.required {
                    format!(
                        "service {name:?} depends on service {dep:?}, whose profile is not active"
                    )
                } else {
                    continue;
                };
                errors.push(sources.error(&at(&format!(".depends_on.{dep}")), why, None));
            }
        }
        if let (Some(s), Some(r)) = (svc.scale, replicas)
            && s != r
        {
            errors.push(sources.error(
                &at(".scale"),
                format!("scale ({s}) and deploy.replicas ({r}) differ"),
                Some("set only one of them".into()),
            ));
        }
        if svc.container_name.is_some() && svc.scale.or(replicas).unwrap_or(1) > 1 {
            errors.push(sources.error(
                &at(".container_name"),
                format!("service {name:?} sets container_name but has more than one replica"),
                Some("container names must be unique: remove container_name or scale to 1".into()),
            ));
        }
        let limits = svc
            .deploy
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.limits.as_ref());
        if let (Some(m), Some(l)) = (&svc.mem_limit, limits.and_then(|l| l.memory.as_ref()))
            && parse_bytes(m) != parse_bytes(l)
        {
            errors.push(sources.error(
                &at(".mem_limit"),
                format!("mem_limit ({m}) and deploy.resources.limits.memory ({l}) differ"),
                None,
            ));
        }
        let reservations = svc
            .deploy
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.reservations.as_ref());
        if let (Some(m), Some(r)) = (
            &svc.mem_reservation,
            reservations.and_then(|r| r.memory.as_ref()),
        ) && parse_bytes(m) != parse_bytes(r)
        {
            errors.push(sources.error(
                &at(".mem_reservation"),
                format!(
                    "mem_reservation ({m}) and deploy.resources.reservations.memory ({r}) differ"
                ),
                None,
            ));
        }
        if let (Some(n), Some(l)) = (svc.pids_limit, limits.and_then(|l| l.pids))
            && n != 0
            && n != l
        {
            errors.push(sources.error(
                &at(".pids_limit"),
                format!("pids_limit ({n}) and deploy.resources.limits.pids ({l}) differ"),
                None,
            ));
        }
        if let (Some(c), Some(l)) = (svc.cpus, limits.and_then(|l| l.cpus))
            && (c - l).abs() > f64::EPSILON
        {
            errors.push(sources.error(
                &at(".cpus"),
                format!("cpus ({c}) and deploy.resources.limits.cpus ({l}) differ"),
                None,
            ));
        }
    }
    for (key, n) in &p.networks {
        // docker compose accepts and ignores these (compose-go checks only volumes).
        if n.external
            && (n.driver.is_some() || n.ipam.is_some() || !n.driver_opts.is_empty() || n.internal)
        {
            tracing::warn!(
                "network {key:?} is external: its driver, driver_opts, ipam and internal are ignored"
            );
        }
    }
    if let Some(cycle) = find_cycle(p) {
        errors.push(sources.error(
            &format!("services.{}.depends_on", cycle[0]),
            format!("dependency cycle detected: {}", cycle.join(" -> ")),
            None,
        ));
    }
}

/// A dependency cycle, as the list of services along it (first repeated at the end).
pub fn find_cycle(p: &Project) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> =
        p.services.keys().map(|k| (k.as_str(), Mark::New)).collect();
    fn visit<'a>(
        p: &'a Project,
        n: &'a str,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) | None => return None,
            Some(Mark::Active) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut c: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            Some(Mark::New) => {}
        }
        marks.insert(n, Mark::Active);
        stack.push(n);
        for dep in p.services[n].depends_on.keys() {
            if dep != n
                && let Some(c) = visit(p, dep, marks, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(n, Mark::Done);
        None
    }
    let names: Vec<&str> = p.services.keys().map(String::as_str).collect();
    for n in names {
        let mut stack = Vec::new();
        if let Some(c) = visit(p, n, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1GB"), Some(1 << 30));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(
            parse_duration("1m30s"),
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("500ms"),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(parse_duration("x"), None);
    }
}
