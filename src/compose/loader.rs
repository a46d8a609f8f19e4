//! Finds the compose files, reads `.env`, parses, interpolates, merges and normalises.
use super::error::ComposeError;
use super::interpolate::{Env, interpolate_value};
use super::model::{ComposeFile, Project, VolumeType};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The file names searched for, in order of preference.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files, in order; empty means discovery from `working_dir`.
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// Where discovery starts (the process's working directory).
    pub working_dir: PathBuf,
    /// The process environment; `.env` values fill in what it lacks.
    pub env: Env,
}

/// Loads a project as docker compose would.
pub fn load(opts: &LoadOptions) -> Result<Project, ComposeError> {
    let files = if opts.files.is_empty() {
        vec![discover(&opts.working_dir)?]
    } else {
        opts.files
            .iter()
            .map(|f| opts.working_dir.join(f))
            .collect()
    };
    let project_dir = match &opts.project_directory {
        Some(d) => opts.working_dir.join(d),
        None => files[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| opts.working_dir.clone()),
    };
    let mut env = read_dotenv(&project_dir.join(".env"))?;
    env.extend(opts.env.clone());

    let mut merged = serde_json::Value::Object(Default::default());
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| ComposeError::Read {
            path: file.clone(),
            source,
        })?;
        let mut value: serde_json::Value =
            serde_saphyr::from_str(&text).map_err(|e| ComposeError::Yaml {
                path: file.clone(),
                message: e.to_string(),
            })?;
        if value.is_null() {
            value = serde_json::Value::Object(Default::default());
        }
        strip_extensions(&mut value);
        interpolate_value(&mut value, &env, &mut missing, "").map_err(|(key, message)| {
            ComposeError::Invalid {
                file: file.clone(),
                key,
                message,
            }
        })?;
        merge(&mut merged, value);
    }
    let mut seen = BTreeSet::new();
    for m in missing {
        if seen.insert(m.clone()) {
            tracing::warn!("the {m:?} variable is not set, defaulting to a blank string");
        }
    }

    let main_file = files[0].clone();
    let file: ComposeFile =
        serde_path_to_error::deserialize(merged).map_err(|e| ComposeError::Invalid {
            file: main_file.clone(),
            key: e.path().to_string(),
            message: e.inner().to_string(),
        })?;

    let name = match (
        &opts.project_name,
        env.get("COMPOSE_PROJECT_NAME"),
        &file.name,
    ) {
        (Some(n), _, _) => validate_name(n)?,
        (None, Some(n), _) if !n.is_empty() => validate_name(n)?,
        (None, _, Some(n)) => validate_name(n)?,
        _ => normalize_name(
            &project_dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    };
    let project = normalize(file, name, project_dir, files, &env, &main_file)?;
    Ok(project)
}

/// Searches `dir` and its parents for a compose file.
pub fn discover(dir: &Path) -> Result<PathBuf, ComposeError> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        for name in DEFAULT_FILES {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
        cur = d.parent();
    }
    Err(ComposeError::NotFound {
        dir: dir.to_path_buf(),
    })
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

/// A minimal `.env` reader: `KEY=VALUE`, `export`, comments, single and double quotes.
pub fn read_dotenv(path: &Path) -> Result<Env, ComposeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Env::new()),
        Err(source) => {
            return Err(ComposeError::Read {
                path: path.into(),
                source,
            });
        }
    };
    let mut env = Env::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            inner.replace("\\n", "\n").replace("\\\"", "\"")
        } else if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            inner.to_string()
        } else {
            v.split(" #").next().unwrap_or("").trim().to_string()
        };
        env.insert(k.trim().to_string(), v);
    }
    Ok(env)
}

/// Drops `x-*` keys at any level: they are for anchors and tools, not for berth.
fn strip_extensions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            o.retain(|k, _| !k.starts_with("x-"));
            o.values_mut().for_each(strip_extensions);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_extensions),
        _ => {}
    }
}

/// Merges an override file into the base: maps merge key by key, everything else replaces.
fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn normalize(
    file: ComposeFile,
    name: String,
    project_dir: PathBuf,
    files: Vec<PathBuf>,
    env: &Env,
    main_file: &Path,
) -> Result<Project, ComposeError> {
    let mut errors = Vec::new();
    let invalid = |key: String, message: String| ComposeError::Invalid {
        file: main_file.to_path_buf(),
        key,
        message,
    };
    let mut networks = file.networks;
    let mut volumes = file.volumes;
    let mut services = BTreeMap::new();
    for (sname, mut svc) in file.services {
        svc.name = sname.clone();
        if svc.image.is_none() {
            errors.push(invalid(
                format!("services.{sname}"),
                "has neither an image nor a build context specified".into(),
            ));
        }
        if svc.networks.is_empty() {
            svc.networks.insert("default".into(), Default::default());
            networks.entry("default".into()).or_default();
        }
        for net in svc.networks.keys() {
            if !networks.contains_key(net) {
                errors.push(invalid(
                    format!("services.{sname}.networks.{net}"),
                    format!("service {sname:?} refers to undefined network {net:?}"),
                ));
            }
        }
        for dep in svc.depends_on.keys() {
            if dep == &sname {
                errors.push(invalid(
                    format!("services.{sname}.depends_on"),
                    "a service cannot depend on itself".into(),
                ));
            }
        }
        for (k, v) in svc.environment.iter_mut() {
            if v.is_none() {
                *v = env.get(k).cloned();
            }
        }
        svc.environment.retain(|_, v| v.is_some());
        for (i, vol) in svc.volumes.iter_mut().enumerate() {
            match vol.kind {
                VolumeType::Bind => {
                    let src = vol.source.clone().unwrap_or_default();
                    let abs = if let Some(rest) = src.strip_prefix("~/") {
                        PathBuf::from(env.get("HOME").cloned().unwrap_or_default()).join(rest)
                    } else {
                        project_dir.join(&src)
                    };
                    vol.source = Some(clean_path(&abs).to_string_lossy().into_owned());
                }
                VolumeType::Volume => {
                    if let Some(src) = &vol.source
                        && !volumes.contains_key(src)
                    {
                        errors.push(invalid(
                            format!("services.{sname}.volumes[{i}]"),
                            format!("service {sname:?} refers to undefined volume {src:?}"),
                        ));
                    }
                }
                VolumeType::Tmpfs => {}
            }
        }
        services.insert(sname, svc);
    }
    for (sname, svc) in &services {
        for dep in svc.depends_on.keys() {
            if !services.contains_key(dep) {
                errors.push(invalid(
                    format!("services.{sname}.depends_on"),
                    format!("service {sname:?} depends on undefined service {dep:?}"),
                ));
            }
        }
    }
    for (key, net) in networks.iter_mut() {
        set_resource_name(&mut net.name, net.external, &name, key);
    }
    for (key, vol) in volumes.iter_mut() {
        set_resource_name(&mut vol.name, vol.external, &name, key);
    }
    match errors.len() {
        0 => Ok(Project {
            name,
            working_dir: project_dir,
            compose_files: files,
            services,
            networks,
            volumes,
        }),
        1 => Err(errors.remove(0)),
        _ => Err(ComposeError::Many(errors)),
    }
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

/// Lexically removes `.` and `..` components (no symlink resolution).
fn clean_path(p: &Path) -> PathBuf {
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
    fn unknown_key_is_reported_with_its_path() {
        let e = load_str("services:\n  web:\n    image: busybox\n    prots: ['80']\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("services.web"), "{msg}");
        assert!(msg.contains("prots"), "{msg}");
    }

    #[test]
    fn yaml_syntax_error_has_line_and_column() {
        let e = load_str("services:\n  web:\n    image: [busybox\n").unwrap_err();
        assert!(matches!(e, ComposeError::Yaml { .. }));
        assert!(e.to_string().contains("line"), "{e}");
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
    }
}
