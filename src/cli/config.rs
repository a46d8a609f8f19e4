//! `berth config`: the project as berth understands it, canonical (sorted keys, long forms) and
//! stable from run to run, or one facet of it (`--services`, `--images`, `--variables`, …).
use crate::compose::interpolate::{Variable, extract_value_variables};
use crate::compose::loader::{load_merged, resolve_environment};
use crate::compose::{LoadOptions, Project, load};
use anyhow::Context;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
    /// Print the service names, one per line
    #[arg(long)]
    pub services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    pub volumes: bool,
    /// Print the network names, one per line
    #[arg(long)]
    pub networks: bool,
    /// Print the image names, one per line
    #[arg(long)]
    pub images: bool,
    /// Print the profile names, one per line
    #[arg(long)]
    pub profiles: bool,
    /// Print the model names, one per line
    #[arg(long)]
    pub models: bool,
    /// Print the configuration hash of the services ("*" for all)
    #[arg(long, value_name = "SERVICES")]
    pub hash: Option<String>,
    /// Do not interpolate variables
    #[arg(long)]
    pub no_interpolate: bool,
    /// Do not normalise the model (print the merged files as written)
    #[arg(long)]
    pub no_normalize: bool,
    /// Keep relative paths as written
    #[arg(long)]
    pub no_path_resolution: bool,
    /// Don't check model consistency (may print an invalid model)
    #[arg(long)]
    pub no_consistency: bool,
    /// Don't resolve service env files
    #[arg(long)]
    pub no_env_resolution: bool,
    /// Print the environment used for interpolation
    #[arg(long)]
    pub environment: bool,
    /// Print the variables the model uses, with their defaults
    #[arg(long)]
    pub variables: bool,
    /// Only validate, print nothing
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the output to a file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only these services (and what they depend on)
    pub service_names: Vec<String>,
}

/// Runs `config`; returns the exit code.
pub fn run(args: &ConfigArgs, mut opts: LoadOptions) -> anyhow::Result<i32> {
    opts.no_interpolate |= args.no_interpolate;
    opts.no_path_resolution |= args.no_path_resolution;
    opts.skip_consistency |= args.no_consistency;
    opts.no_env_resolution |= args.no_env_resolution;
    let text = render(args, &opts)?;
    if args.quiet {
        return Ok(0);
    }
    match &args.output {
        Some(path) => std::fs::write(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(0)
}

fn lines<I: IntoIterator<Item = String>>(items: I) -> String {
    items.into_iter().map(|s| s + "\n").collect()
}

/// The text `config` prints for these arguments.
pub fn render(args: &ConfigArgs, opts: &LoadOptions) -> anyhow::Result<String> {
    if args.environment {
        let (env, _, _) = resolve_environment(opts)?;
        return Ok(lines(env.into_iter().map(|(k, v)| format!("{k}={v}"))));
    }
    if args.variables {
        let mut raw = opts.clone();
        raw.no_interpolate = true;
        raw.skip_schema = true;
        let (value, _) = load_merged(&raw)?;
        let mut vars = BTreeMap::new();
        extract_value_variables(&value, &mut vars);
        return Ok(variables_table(&vars));
    }
    if args.no_normalize {
        let (mut value, name) = load_merged(opts)?;
        if let Some(o) = value.as_object_mut() {
            o.insert("name".into(), Value::String(name));
        }
        return format(&sort(value), args.format);
    }
    let mut opts = opts.clone();
    opts.enabled_services
        .extend(args.service_names.iter().cloned());
    // `--hash a,b` narrows the project to those services, as docker compose does, so that
    // another service's missing env file does not stop it.
    if let Some(which) = args.hash.as_deref().filter(|h| *h != "*") {
        opts.enabled_services
            .extend(which.split(',').map(|s| s.trim().to_string()));
    }
    let mut project = load(&opts)?;
    if !args.service_names.is_empty() {
        keep_services(&mut project, &args.service_names);
    }
    if args.services {
        return Ok(lines(project.services.keys().cloned()));
    }
    if args.volumes {
        return Ok(lines(project.volumes.keys().cloned()));
    }
    if args.networks {
        return Ok(lines(project.networks.keys().cloned()));
    }
    if args.profiles {
        return Ok(lines(project.all_profiles()));
    }
    if args.models {
        // The `model` of each top-level model, as docker compose prints them.
        return Ok(lines(project.models.values().filter_map(|m| {
            m.get("model").and_then(|v| v.as_str()).map(String::from)
        })));
    }
    if args.images {
        return Ok(lines(project.services.iter().map(|(n, s)| {
            s.image
                .clone()
                .unwrap_or_else(|| format!("{}-{n}", project.name))
        })));
    }
    if let Some(which) = &args.hash {
        let wanted: Vec<&str> = which.split(',').map(str::trim).collect();
        let mut out = Vec::new();
        for (name, _) in project.services.iter() {
            if wanted.contains(&"*") || wanted.contains(&name.as_str()) {
                out.push(format!("{name} {}", service_hash(&project, name)?));
            }
        }
        return Ok(lines(out));
    }
    if !opts.no_env_resolution {
        // Resolved into `environment`, the env files are left out, as docker compose's
        // `config` does (WithServicesEnvironmentResolved with discard).
        for s in project.services.values_mut() {
            s.env_file.clear();
        }
    }
    let mut value = serde_json::to_value(&project)?;
    // A service network without options prints as `null`, as docker compose prints it.
    if let Some(services) = value.get_mut("services").and_then(Value::as_object_mut) {
        for svc in services.values_mut() {
            if let Some(nets) = svc.get_mut("networks").and_then(Value::as_object_mut) {
                for n in nets.values_mut() {
                    if n.as_object().is_some_and(|o| o.is_empty()) {
                        *n = Value::Null;
                    }
                }
            }
        }
    }
    format(&sort(value), args.format)
}

/// Keeps the named services and everything they depend on.
fn keep_services(p: &mut Project, names: &[String]) {
    let mut keep = std::collections::BTreeSet::new();
    let mut todo: Vec<String> = names.to_vec();
    while let Some(n) = todo.pop() {
        if keep.insert(n.clone())
            && let Some(s) = p.services.get(&n)
        {
            todo.extend(s.depends_on.keys().cloned());
        }
    }
    p.services.retain(|k, _| keep.contains(k));
}

/// The service's configuration hash, the one `up` stores in its containers' `config-hash` label.
pub fn service_hash(p: &Project, name: &str) -> anyhow::Result<String> {
    p.services
        .get(name)
        .map(crate::compose::Service::config_hash)
        .with_context(|| format!("no such service: {name}"))
}

/// Sorts object keys recursively (serde_json's map may keep insertion order).
fn sort(v: Value) -> Value {
    match v {
        Value::Object(o) => {
            let sorted: BTreeMap<String, Value> =
                o.into_iter().map(|(k, v)| (k, sort(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort).collect()),
        v => v,
    }
}

fn format(v: &Value, f: Format) -> anyhow::Result<String> {
    Ok(match f {
        Format::Json => serde_json::to_string_pretty(v)? + "\n",
        Format::Yaml => serde_saphyr::to_string(v)?,
    })
}

fn variables_table(vars: &BTreeMap<String, Variable>) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "REQUIRED".to_string(),
        "DEFAULT VALUE".to_string(),
        "ALTERNATE VALUE".to_string(),
    ]];
    for v in vars.values() {
        rows.push([
            v.name.clone(),
            if v.required { "true" } else { "false" }.to_string(),
            v.default_value.clone(),
            v.presence_value.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                if i == 3 {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
                }
            }
            line.trim_end().to_string() + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_dir(yaml: &str) -> (tempfile::TempDir, LoadOptions) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("demo");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("compose.yaml"), yaml).unwrap();
        let opts = LoadOptions {
            working_dir: p,
            env: [("TAG".to_string(), "1.0".to_string())].into(),
            ..Default::default()
        };
        (d, opts)
    }

    const YAML: &str = "services:\n  web:\n    image: nginx:${TAG}\n    ports: ['8080:80']\n    depends_on: [db]\n  db:\n    build: .\n    profiles: [data]\n    environment:\n      - A=${A:-x}\n      - B=${B:?need B}\n";

    #[test]
    fn canonical_output_is_stable_and_sorted() {
        let (_d, opts) = project_dir(YAML);
        let opts = LoadOptions {
            profiles: vec!["data".into()],
            env: [("TAG", "1.0"), ("B", "b")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..opts
        };
        let args = ConfigArgs {
            format: Format::Json,
            ..Default::default()
        };
        let a = render(&args, &opts).unwrap();
        let b = render(&args, &opts).unwrap();
        assert_eq!(a, b);
        let v: Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["name"], "demo");
        assert_eq!(v["services"]["web"]["image"], "nginx:1.0");
        assert_eq!(v["services"]["web"]["ports"][0]["published"], "8080");
        let yaml = render(&ConfigArgs::default(), &opts).unwrap();
        assert!(
            yaml.contains("published: '8080'") || yaml.contains("published: \"8080\""),
            "{yaml}"
        );
        let services = render(
            &ConfigArgs {
                services: true,
                ..Default::default()
            },
            &opts,
        )
        .unwrap();
        assert_eq!(services, "db\nweb\n");
        let images = render(
            &ConfigArgs {
                images: true,
                ..Default::default()
            },
            &opts,
        )
        .unwrap();
        assert_eq!(images, "demo-db\nnginx:1.0\n");
    }

    #[test]
    fn variables_and_profiles() {
        let (_d, opts) = project_dir(YAML);
        let vars = render(
            &ConfigArgs {
                variables: true,
                ..Default::default()
            },
            &opts,
        )
        .unwrap();
        let lines: Vec<&str> = vars.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{vars}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("B ") && l.contains("true")),
            "{vars}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("A ") && l.contains(" x")),
            "{vars}"
        );
        let (_d, opts) = project_dir(YAML);
        let opts = LoadOptions {
            env: [("B".to_string(), "b".to_string())].into(),
            profiles: vec!["data".into()],
            ..opts
        };
        let profiles = render(
            &ConfigArgs {
                profiles: true,
                ..Default::default()
            },
            &opts,
        )
        .unwrap();
        assert_eq!(profiles, "data\n");
    }

    #[test]
    fn yaml_output_reads_back_as_the_json_output() {
        let (_d, opts) = project_dir(
            "services:\n  web:\n    image: 'x'\n    environment: {A: 'on', B: '8080:80', C: '010', D: 'null', E: ''}\n    labels: ['k=#v', 'multi=a\\nb']\n",
        );
        let yaml = render(&ConfigArgs::default(), &opts).unwrap();
        let json = render(
            &ConfigArgs {
                format: Format::Json,
                ..Default::default()
            },
            &opts,
        )
        .unwrap();
        let back = crate::compose::yaml::parse(&yaml).unwrap().remove(0).value;
        assert_eq!(
            back,
            serde_json::from_str::<Value>(&json).unwrap(),
            "{yaml}"
        );
    }

    #[test]
    fn hash_ignores_scale_and_dependencies() {
        let (_d, opts) = project_dir("services:\n  web:\n    image: a\n    scale: 2\n");
        let p1 = load(&opts).unwrap();
        let (_d2, opts2) = project_dir("services:\n  web:\n    image: a\n");
        let p2 = load(&opts2).unwrap();
        assert_eq!(
            service_hash(&p1, "web").unwrap(),
            service_hash(&p2, "web").unwrap()
        );
    }
}
