//! RUN `--mount=type=bind|cache|tmpfs|secret,…`: parsing the flag, and cleaning the mount
//! points a step container got out of the layer it leaves.
//!
//! What each type becomes is decided by the executor: a read-only bind of a context path or of
//! a stage's or image's root filesystem (`rw` binds a throwaway copy, as BuildKit discards
//! writes), a persistent directory under `build-cache-mounts/` keyed by `id` (default: the
//! target), a tmpfs, or a secret file written for this step only (default target
//! `/run/secrets/<id>`). `type=ssh` is refused.

use std::fs;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Absolute, or relative to the working directory.
    pub target: String,
    pub source: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub read_write: bool,
    pub required: bool,
    pub size: Option<u64>,
    pub mode: Option<u32>,
}

fn flag(v: &str) -> Result<bool, String> {
    match v {
        "" | "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got {v:?}")),
    }
}

/// Parses one `--mount` value.
pub fn parse(s: &str) -> Result<MountSpec, String> {
    let bad = |m: String| format!("--mount={s}: {m}");
    let mut kind = MountKind::Bind;
    let mut spec = MountSpec {
        kind,
        target: String::new(),
        source: None,
        from: None,
        id: None,
        read_write: false,
        required: false,
        size: None,
        mode: None,
    };
    for kv in s.split(',').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => {
                kind = match v {
                    "bind" => MountKind::Bind,
                    "cache" => MountKind::Cache,
                    "tmpfs" => MountKind::Tmpfs,
                    "secret" => MountKind::Secret,
                    "ssh" => return Err(bad("type=ssh is not supported".into())),
                    _ => return Err(bad(format!("unknown mount type {v:?}"))),
                }
            }
            "target" | "dst" | "destination" => spec.target = v.to_owned(),
            "source" | "src" => spec.source = Some(v.to_owned()),
            "from" => spec.from = Some(v.to_owned()),
            "id" => spec.id = Some(v.to_owned()),
            "rw" | "readwrite" => spec.read_write = flag(v).map_err(bad)?,
            "ro" | "readonly" => spec.read_write = !flag(v).map_err(bad)?,
            "required" => spec.required = flag(v).map_err(bad)?,
            "size" => {
                spec.size = Some(
                    crate::compose::normalize::parse_bytes(v)
                        .ok_or_else(|| bad(format!("invalid size {v:?}")))?,
                )
            }
            "mode" => {
                spec.mode = Some(
                    u32::from_str_radix(v, 8).map_err(|_| bad(format!("invalid mode {v:?}")))?,
                )
            }
            // Accepted, with berth's one behaviour: caches are shared, owned by root.
            "sharing" | "uid" | "gid" | "env" => {}
            _ => return Err(bad(format!("unknown option {k:?}"))),
        }
    }
    spec.kind = kind;
    if kind == MountKind::Cache {
        spec.read_write = true;
    }
    if spec.target.is_empty() {
        match (kind, &spec.id) {
            (MountKind::Secret, Some(id)) => spec.target = format!("/run/secrets/{id}"),
            _ => return Err(bad("target is required".into())),
        }
    }
    if kind == MountKind::Secret && spec.id.is_none() {
        spec.id = Path::new(&spec.target)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
    }
    Ok(spec)
}

/// Removes the empty file or directory a mount point left at `target` in `upper`, and the
/// empty directories above it, up to `upper` itself.
pub fn prune_stub(upper: &Path, target: &str) {
    let mut p = upper.join(target.trim_start_matches('/'));
    while p != upper && p.starts_with(upper) {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            // Not created: its parents may still have been.
            if !p.pop() {
                return;
            }
            continue;
        };
        let removed = if meta.is_dir() {
            fs::remove_dir(&p).is_ok()
        } else {
            meta.is_file() && meta.len() == 0 && fs::remove_file(&p).is_ok()
        };
        if !removed || !p.pop() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flags() {
        let m = parse("type=cache,target=/root/.cache,id=pip").unwrap();
        assert_eq!(m.kind, MountKind::Cache);
        assert!(m.read_write);
        assert_eq!(m.id.as_deref(), Some("pip"));
        let m = parse("type=secret,id=tok").unwrap();
        assert_eq!(m.target, "/run/secrets/tok");
        let m = parse("type=secret,target=/etc/key,required").unwrap();
        assert_eq!(m.id.as_deref(), Some("key"));
        assert!(m.required);
        let m = parse("target=/src,source=app,rw").unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert!(m.read_write);
        let m = parse("type=tmpfs,target=/t,size=1m").unwrap();
        assert_eq!(m.size, Some(1 << 20));
        for bad in [
            "type=ssh",
            "type=cache",
            "type=x,target=/a",
            "target=/a,bogus=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stubs_are_pruned_up_to_content() {
        let t = tempfile::tempdir().unwrap();
        let up = t.path();
        fs::create_dir_all(up.join("run/secrets")).unwrap();
        fs::write(up.join("run/secrets/tok"), "").unwrap();
        fs::create_dir_all(up.join("keep/cache")).unwrap();
        fs::write(up.join("keep/file"), "x").unwrap();
        prune_stub(up, "/run/secrets/tok");
        prune_stub(up, "/keep/cache");
        prune_stub(up, "/never/created");
        assert!(!up.join("run").exists());
        assert!(!up.join("keep/cache").exists());
        assert!(up.join("keep/file").exists());
    }
}
