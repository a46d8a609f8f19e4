//! Where COPY and ADD read from: the build context (a host directory filtered by
//! `.dockerignore`, whose sources may never lead outside it) or another stage's or image's
//! root filesystem (where symlinks resolve as they would inside that root).

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use sha2::{Digest as _, Sha256};

use super::ignore::{Ignore, fnmatch, has_wildcard};

/// A tree sources are read from.
pub struct SourceRoot {
    root: PathBuf,
    /// Set for root filesystems: resolution is confined with `openat2(RESOLVE_IN_ROOT)`.
    root_fd: Option<OwnedFd>,
    ignore: Ignore,
    what: &'static str,
}

/// One resolved source: its path on the host and its path as the user wrote it (cleaned).
#[derive(Debug, Clone)]
pub struct Source {
    pub host: PathBuf,
    pub rel: String,
}

impl SourceRoot {
    /// The build context at `dir`; sources that lead outside it are refused.
    pub fn context(dir: &Path, ignore: Ignore) -> Result<SourceRoot, String> {
        let root =
            fs::canonicalize(dir).map_err(|e| format!("build context {}: {e}", dir.display()))?;
        Ok(SourceRoot {
            root,
            root_fd: None,
            ignore,
            what: "build context",
        })
    }

    /// A root filesystem (another stage, an image); symlinks resolve inside it.
    pub fn rootfs(dir: &Path) -> Result<SourceRoot, String> {
        let f = File::open(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(SourceRoot {
            root: dir.to_owned(),
            root_fd: Some(f.into()),
            ignore: Ignore::default(),
            what: "stage",
        })
    }

    pub fn is_context(&self) -> bool {
        self.root_fd.is_none()
    }

    /// Whether a context-relative path is excluded by `.dockerignore`.
    pub fn excluded(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.excluded(rel)
    }

    /// Expands a source pattern (wildcards allowed) into existing sources.
    pub fn sources(&self, pattern: &str) -> Result<Vec<Source>, String> {
        let comps = clean(pattern)
            .ok_or_else(|| format!("{pattern}: the path is outside the {}", self.what))?;
        let mut prefixes = vec![String::new()];
        for c in &comps {
            let mut next = Vec::new();
            for p in &prefixes {
                if has_wildcard(c) {
                    let dir = self.resolve(p)?;
                    let mut names: Vec<String> = match fs::read_dir(&dir) {
                        Ok(rd) => rd
                            .flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect(),
                        Err(_) => continue,
                    };
                    names.sort();
                    for n in names {
                        let rel = join(p, &n);
                        if fnmatch(c, &n) && !self.excluded(&rel) {
                            next.push(rel);
                        }
                    }
                } else {
                    next.push(join(p, c));
                }
            }
            prefixes = next;
        }
        if prefixes.is_empty() {
            return Err(format!("no source files were specified by {pattern:?}"));
        }
        prefixes
            .into_iter()
            .map(|rel| {
                if self.excluded(&rel) {
                    return Err(format!(
                        "{pattern}: not found in the {} (or excluded by .dockerignore)",
                        self.what
                    ));
                }
                Ok(Source {
                    host: self.resolve(&rel)?,
                    rel,
                })
            })
            .collect()
    }

    /// The host path of a cleaned relative path, confined or refused per the root's kind.
    fn resolve(&self, rel: &str) -> Result<PathBuf, String> {
        match &self.root_fd {
            Some(fd) => {
                let path = if rel.is_empty() { "." } else { rel };
                let f = crate::sys::fsat::open_in_root(fd.as_fd(), Path::new(path), OFlag::O_PATH)
                    .map_err(|e| format!("{rel}: not found in the {}: {e}", self.what))?;
                fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
                    .map_err(|e| format!("{rel}: {e}"))
            }
            None => {
                let host = self.root.join(rel);
                let canon = fs::canonicalize(&host).map_err(|_| {
                    format!("{rel}: not found in the build context (or excluded by .dockerignore)")
                })?;
                if !canon.starts_with(&self.root) {
                    return Err(format!(
                        "{rel}: the path leads outside the build context (through a symlink)"
                    ));
                }
                Ok(canon)
            }
        }
    }

    /// Visits `src` and, if it is a directory, everything below it (symlinks are not
    /// followed), skipping `.dockerignore`d paths. `f` gets the host path, the path relative to
    /// `src` (empty for `src` itself) and the metadata.
    pub fn walk(
        &self,
        src: &Source,
        f: &mut dyn FnMut(&Path, &str, &fs::Metadata) -> Result<(), String>,
    ) -> Result<(), String> {
        let meta = fs::metadata(&src.host).map_err(|e| format!("{}: {e}", src.rel))?;
        f(&src.host, "", &meta)?;
        if meta.is_dir() {
            self.walk_dir(&src.host, &src.rel, "", f)?;
        }
        Ok(())
    }

    fn walk_dir(
        &self,
        dir: &Path,
        base: &str,
        rel: &str,
        f: &mut dyn FnMut(&Path, &str, &fs::Metadata) -> Result<(), String>,
    ) -> Result<(), String> {
        let rd = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let n = n.to_string_lossy().into_owned();
            let child_rel = join(rel, &n);
            if self.excluded(&join(base, &child_rel)) {
                continue;
            }
            let path = dir.join(&n);
            let meta =
                fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            f(&path, &child_rel, &meta)?;
            if meta.is_dir() {
                self.walk_dir(&path, base, &child_rel, f)?;
            }
        }
        Ok(())
    }

    /// A content hash of the sources: names, types, modes and contents.
    pub fn hash(&self, sources: &[Source]) -> Result<String, String> {
        let mut h = Sha256::new();
        for s in sources {
            h.update(s.rel.as_bytes());
            h.update([0]);
            self.walk(s, &mut |path, rel, meta| {
                h.update(rel.as_bytes());
                h.update(meta.permissions().mode().to_le_bytes());
                if meta.file_type().is_symlink() {
                    let t = fs::read_link(path).map_err(|e| format!("{rel}: {e}"))?;
                    h.update(t.as_os_str().as_encoded_bytes());
                } else if meta.is_file() {
                    h.update(meta.size().to_le_bytes());
                    let mut f = File::open(path).map_err(|e| format!("{rel}: {e}"))?;
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = f.read(&mut buf).map_err(|e| format!("{rel}: {e}"))?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                }
                h.update([0xff]);
                Ok(())
            })?;
        }
        Ok(hex::encode(h.finalize()))
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}/{b}")
    }
}

/// Cleans a source path into components; `None` when `..` climbs above the root.
pub fn clean(p: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c.to_owned()),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_sources() {
        let t = tempfile::tempdir().unwrap();
        let ctx = t.path().join("ctx");
        fs::create_dir_all(ctx.join("d/e")).unwrap();
        for f in ["a.txt", "b.txt", "c.md", "d/e/f"] {
            fs::write(ctx.join(f), f).unwrap();
        }
        fs::write(t.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("../secret", ctx.join("out")).unwrap();
        std::os::unix::fs::symlink("a.txt", ctx.join("in")).unwrap();
        let root = SourceRoot::context(&ctx, Ignore::parse("b.txt\n")).unwrap();
        let rels = |p: &str| -> Result<Vec<String>, String> {
            root.sources(p)
                .map(|v| v.into_iter().map(|s| s.rel).collect())
        };
        assert_eq!(rels("*.txt").unwrap(), ["a.txt"]);
        assert_eq!(rels("/d/./e/../e/f").unwrap(), ["d/e/f"]);
        assert_eq!(rels("in").unwrap(), ["in"]);
        assert!(rels("../secret").unwrap_err().contains("outside"));
        assert!(rels("out").unwrap_err().contains("outside"));
        assert!(rels("b.txt").unwrap_err().contains("dockerignore"));
        assert!(rels("*.none").is_err());
        let h1 = root.hash(&root.sources(".").unwrap()).unwrap();
        fs::write(ctx.join("b.txt"), "changed but ignored").unwrap();
        assert_eq!(h1, root.hash(&root.sources(".").unwrap()).unwrap());
        fs::write(ctx.join("d/e/f"), "changed").unwrap();
        assert_ne!(h1, root.hash(&root.sources(".").unwrap()).unwrap());
    }
}
