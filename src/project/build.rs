//! Compose `build:`: from a service's build section to [`BuildOptions`], the image name a built
//! service gets, and building the services of a project (`berth build [SERVICE...]`, `up`).
//!
//! The one decision to know: a service's image is named `image:` when it sets one, else
//! `<project>-<service>`, as docker compose names it; `up` and `build` agree on that name, so
//! `up` finds what `build` made.
use super::Progress;
use crate::compose::{BuildConfig, Project, Service};
use crate::engine::build::{self, BuildOptions, Reporter};
use crate::state::Paths;
use anyhow::{Context, Result, anyhow, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The image a service runs: `image:`, else `<project>-<service>`.
pub fn image_name(project: &Project, svc: &Service) -> String {
    svc.image
        .clone()
        .unwrap_or_else(|| format!("{}-{}", project.name, svc.name))
}

/// What `berth build` adds to every service's build section.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--build-arg`: wins over the compose file's `args`.
    pub args: BTreeMap<String, String>,
    pub no_cache: bool,
    pub pull: bool,
}

/// The builder's options for one service. `env` resolves args listed without a value.
pub fn options(
    project: &Project,
    svc: &Service,
    b: &BuildConfig,
    over: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BuildOptions> {
    let invalid = |m: String| anyhow!("service {:?}: build: {m}", svc.name);
    let context = PathBuf::from(b.context.as_deref().unwrap_or("."));
    let context = if context.is_absolute() {
        context
    } else {
        project.working_dir.join(context)
    };
    if b.context.as_deref().is_some_and(|c| c.contains("://")) {
        return Err(invalid(format!(
            "remote context {:?} is not supported: clone it and point context at the folder",
            b.context.as_deref().unwrap_or_default()
        )));
    }
    let mut build_args = BTreeMap::new();
    for (k, v) in &b.args {
        if let Some(v) = v.clone().or_else(|| env(k)) {
            build_args.insert(k.clone(), v);
        }
    }
    build_args.extend(over.args.clone());
    let mut tags = vec![image_name(project, svc)];
    tags.extend(b.tags.iter().cloned());
    let shm_size = match &b.shm_size {
        Some(s) => Some(
            crate::compose::normalize::parse_bytes(s)
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid(format!("invalid shm_size {s:?}")))?,
        ),
        None => None,
    };
    let mut extra_hosts = Vec::new();
    for (host, ips) in &b.extra_hosts {
        for ip in ips {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(format!(
                    "extra_hosts {host}: invalid IP address {ip:?}"
                )));
            }
            extra_hosts.push((host.clone(), ip.clone()));
        }
    }
    let mut secrets = BTreeMap::new();
    for s in &b.secrets {
        let def = project
            .secrets
            .get(&s.source)
            .ok_or_else(|| invalid(format!("secret {:?} is not defined", s.source)))?;
        let content = if let Some(file) = &def.file {
            std::fs::read(file).with_context(|| format!("reading secret {:?}", s.source))?
        } else if let Some(var) = &def.environment {
            env(var)
                .ok_or_else(|| invalid(format!("secret {:?}: ${var} is not set", s.source)))?
                .into_bytes()
        } else if let Some(c) = &def.content {
            c.clone().into_bytes()
        } else {
            return Err(invalid(format!(
                "secret {:?}: external secrets cannot be used in builds",
                s.source
            )));
        };
        secrets.insert(
            s.target.clone().unwrap_or_else(|| s.source.clone()),
            content,
        );
    }
    let network = match b.network.as_deref() {
        None | Some("default") => None,
        Some(n @ ("host" | "none")) => Some(n.to_string()),
        Some(other) => {
            return Err(invalid(format!(
                "network {other:?} is not supported (default, host or none)"
            )));
        }
    };
    Ok(BuildOptions {
        dockerfile: b.dockerfile.as_ref().map(|d| context.join(d)),
        context,
        dockerfile_inline: b.dockerfile_inline.clone(),
        build_args,
        target: b.target.clone(),
        tags,
        labels: b.labels.clone(),
        no_cache: b.no_cache || over.no_cache,
        network,
        pull: b.pull || over.pull,
        extra_hosts,
        shm_size,
        secrets,
    })
}

/// Build progress as project events: `Build web  [2/5] RUN …`.
pub struct Events<'a> {
    pub progress: &'a dyn Progress,
    pub service: &'a str,
}

impl Reporter for Events<'_> {
    fn step(&self, line: &str) {
        self.progress.event("Build", self.service, line);
    }
    fn output(&self, line: &str) {
        self.progress.event("Build", self.service, line);
    }
}

/// Builds one service's image and returns its id.
pub fn build_service(
    paths: &Paths,
    project: &Project,
    svc: &Service,
    over: &Overrides,
    rep: &dyn Reporter,
) -> Result<String> {
    let Some(b) = &svc.build else {
        bail!("service {:?} has no build section", svc.name);
    };
    let env = |k: &str| project.environment.get(k).cloned();
    let opts = options(project, svc, b, over, &env)?;
    let built = build::build(paths, &opts, rep)
        .with_context(|| format!("building service {:?}", svc.name))?;
    Ok(built.image_id)
}

/// `berth build [SERVICE...]`: the named services (all with a build section by default).
/// Returns the services built with their image names and ids.
pub fn build_services(
    paths: &Paths,
    project: &Project,
    names: &[String],
    over: &Overrides,
    rep: &dyn Reporter,
) -> Result<Vec<(String, String, String)>> {
    for n in names {
        if !project.services.contains_key(n) {
            bail!("no such service: {n}");
        }
    }
    let mut out = Vec::new();
    for (name, svc) in &project.services {
        if svc.build.is_none() || (!names.is_empty() && !names.contains(name)) {
            continue;
        }
        rep.step(&format!("building service {name}"));
        let id = build_service(paths, project, svc, over, rep)?;
        out.push((name.clone(), image_name(project, svc), id));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        crate::compose::load(&crate::compose::LoadOptions {
            working_dir: dir.path().to_owned(),
            project_name: Some("demo".into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn build_section_becomes_builder_options() {
        let p = project(
            r#"
services:
  web:
    build:
      context: ./app
      dockerfile: Dockerfile.dev
      args: {A: "1", FROM_ENV: null}
      target: final
      labels: {l: v}
      tags: ["extra:1"]
      no_cache: true
      network: none
      shm_size: 128m
      extra_hosts: ["db=10.0.0.9"]
      secrets: [tok]
secrets:
  tok:
    environment: TOKEN
"#,
        );
        let svc = &p.services["web"];
        let env = |k: &str| match k {
            "FROM_ENV" => Some("e".to_string()),
            "TOKEN" => Some("s3cret".to_string()),
            _ => None,
        };
        let over = Overrides {
            args: [("A".to_string(), "2".to_string())].into(),
            ..Default::default()
        };
        let o = options(&p, svc, svc.build.as_ref().unwrap(), &over, &env).unwrap();
        assert!(o.context.ends_with("app"));
        assert_eq!(o.dockerfile, Some(o.context.join("Dockerfile.dev")));
        assert_eq!(o.build_args["A"], "2");
        assert_eq!(o.build_args["FROM_ENV"], "e");
        assert_eq!(o.target.as_deref(), Some("final"));
        assert_eq!(o.tags, vec!["demo-web".to_string(), "extra:1".into()]);
        assert_eq!(o.labels["l"], "v");
        assert!(o.no_cache);
        assert_eq!(o.network.as_deref(), Some("none"));
        assert_eq!(o.shm_size, Some(128 << 20));
        assert_eq!(o.extra_hosts, vec![("db".into(), "10.0.0.9".into())]);
        assert_eq!(o.secrets["tok"], b"s3cret");
    }

    #[test]
    fn image_name_defaults_to_project_service() {
        let p = project("services:\n  a:\n    build: .\n  b:\n    image: x:1\n    build: .\n");
        assert_eq!(image_name(&p, &p.services["a"]), "demo-a");
        assert_eq!(image_name(&p, &p.services["b"]), "x:1");
    }
}
