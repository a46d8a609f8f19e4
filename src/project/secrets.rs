//! A service's `secrets` and `configs`, as docker compose provides them outside swarm: a `file`
//! is bind-mounted read-only; `environment` or `content` becomes a file with the reference's
//! `uid`, `gid` and `mode` (default `0:0`, `0444`). Secrets land in `/run/secrets/<target>`,
//! configs at `/<target>`; an absolute target is taken as it is.
//!
//! The one decision to know: docker compose copies `environment`/`content` files into the
//! container's filesystem; berth writes them into the container's state directory
//! (`files/`, mode 0700, removed with the container) and bind-mounts them read-only, so the
//! secret never enters the overlay's upper layer (and a `read_only` service can have one).
use crate::compose::{FileObject, FileRef, Project, Service};
use crate::engine::container::{ContainerRecord, Mount};
use crate::state::Paths;
use anyhow::{Context, Result, anyhow, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

#[derive(Clone, Copy)]
enum Kind {
    Secret,
    Config,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    /// Where the reference lands in the container.
    fn target(self, r: &FileRef) -> String {
        let base = match self {
            Kind::Secret => "/run/secrets/",
            Kind::Config => "/",
        };
        match r.target.as_deref() {
            Some(t) if t.starts_with('/') => t.to_string(),
            Some(t) if !t.is_empty() => format!("{base}{t}"),
            _ => format!("{base}{}", r.source),
        }
    }
}

/// Adds the mounts of `svc`'s secrets and configs to `rec`, writing the files of those given
/// by `environment` or `content` into the container's directory.
pub fn inject(
    paths: &Paths,
    project: &Project,
    svc: &Service,
    rec: &mut ContainerRecord,
) -> Result<()> {
    let refs = svc
        .secrets
        .iter()
        .map(|r| (Kind::Secret, r, project.secrets.get(&r.source)))
        .chain(
            svc.configs
                .iter()
                .map(|r| (Kind::Config, r, project.configs.get(&r.source))),
        );
    for (i, (kind, r, obj)) in refs.enumerate() {
        let what = format!("service {:?}: {} {:?}", svc.name, kind.name(), r.source);
        let obj = obj.ok_or_else(|| anyhow!("{what} is not defined"))?;
        let mount = mount(paths, project, rec, kind, r, obj, i).with_context(|| what.clone())?;
        rec.mounts.push(mount);
    }
    Ok(())
}

fn mount(
    paths: &Paths,
    project: &Project,
    rec: &ContainerRecord,
    kind: Kind,
    r: &FileRef,
    obj: &FileObject,
    index: usize,
) -> Result<Mount> {
    if obj.external {
        bail!(
            "external {}s are not supported (docker compose has none outside swarm)",
            kind.name()
        );
    }
    if obj.driver.is_some() || obj.template_driver.is_some() {
        bail!("driver and template_driver are not supported (as in docker compose)");
    }
    let target = kind.target(r);
    let content = match (&obj.content, &obj.environment) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(var)) => Some(
            project
                .environment
                .get(var)
                .cloned()
                .ok_or_else(|| anyhow!("environment variable {var:?} is not set"))?,
        ),
        (None, None) => None,
    };
    let source = match content {
        None => {
            let file = PathBuf::from(
                obj.file
                    .clone()
                    .ok_or_else(|| anyhow!("it has no file, environment or content"))?,
            );
            if !file.exists() {
                bail!("file {} does not exist", file.display());
            }
            if r.uid.is_some() || r.gid.is_some() || r.mode.is_some() {
                tracing::warn!(
                    "{} {:?}: uid, gid and mode of a file are ignored (it is bind-mounted, as docker compose does)",
                    kind.name(),
                    r.source
                );
            }
            file
        }
        Some(content) => write_file(paths, rec, kind, r, index, &content)?,
    };
    Ok(Mount {
        source,
        target,
        read_only: true,
        ..Default::default()
    })
}

/// Writes `content` as `files/<kind>-<index>` of the container, owned and moded as asked.
fn write_file(
    paths: &Paths,
    rec: &ContainerRecord,
    kind: Kind,
    r: &FileRef,
    index: usize,
    content: &str,
) -> Result<PathBuf> {
    let id = |v: &Option<String>, what: &str| -> Result<u32> {
        v.as_deref().map_or(Ok(0), str::parse).map_err(|_| {
            anyhow!(
                "{what} {:?} is not a number",
                v.as_deref().unwrap_or_default()
            )
        })
    };
    let (uid, gid) = (id(&r.uid, "uid")?, id(&r.gid, "gid")?);
    let dir = rec.dir(paths).join("files");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("{}", dir.display()))?;
    let path = dir.join(format!("{}-{index}", kind.name()));
    let io = |e: std::io::Error| anyhow!("{}: {e}", path.display());
    // Written beside and renamed, so a file of an earlier attempt is replaced whole.
    let tmp = dir.join(format!(".{}-{index}.tmp", kind.name()));
    std::fs::write(&tmp, content).map_err(io)?;
    std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).map_err(io)?;
    std::fs::set_permissions(
        &tmp,
        std::fs::Permissions::from_mode(r.mode.unwrap_or(0o444)),
    )
    .map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_docker_compose() {
        let r = |source: &str, target: Option<&str>| FileRef {
            source: source.into(),
            target: target.map(String::from),
            ..Default::default()
        };
        assert_eq!(Kind::Secret.target(&r("tok", None)), "/run/secrets/tok");
        assert_eq!(Kind::Secret.target(&r("tok", Some("x"))), "/run/secrets/x");
        assert_eq!(Kind::Secret.target(&r("tok", Some("/etc/x"))), "/etc/x");
        assert_eq!(Kind::Config.target(&r("cfg", None)), "/cfg");
        assert_eq!(
            Kind::Config.target(&r("cfg", Some("etc/app.conf"))),
            "/etc/app.conf"
        );
        assert_eq!(
            Kind::Config.target(&r("cfg", Some("/app.conf"))),
            "/app.conf"
        );
    }
}
