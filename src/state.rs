//! Where berth keeps its state, and small helpers to write it safely.
//!
//! Two roots: `data` (images, volumes, container records, networks; survives reboots) and `run`
//! (runtime state, network namespaces, locks; may be a tmpfs). The defaults are
//! `/var/lib/berth` and `/run/berth`; `--root R` / `BERTH_ROOT=R` puts both under `R` (`R/run`),
//! which is what every test does.
use serde::{Serialize, de::DeserializeOwned};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    pub data: PathBuf,
    pub run: PathBuf,
}

impl Paths {
    /// The default roots, or both under `root` when one is given.
    pub fn new(root: Option<&Path>) -> Paths {
        match root {
            Some(r) => Paths {
                data: r.to_path_buf(),
                run: r.join("run"),
            },
            None => Paths {
                data: "/var/lib/berth".into(),
                run: "/run/berth".into(),
            },
        }
    }

    pub fn images(&self) -> PathBuf {
        self.data.join("images")
    }
    pub fn volumes(&self) -> PathBuf {
        self.data.join("volumes")
    }
    /// The read-only layer every container's root filesystem has above its image's.
    pub fn init_layer(&self) -> PathBuf {
        self.data.join("init-layer")
    }
    pub fn containers(&self) -> PathBuf {
        self.data.join("containers")
    }
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    pub fn networks(&self) -> PathBuf {
        self.data.join("networks")
    }
    /// libcontainer's state directory.
    pub fn runtime(&self) -> PathBuf {
        self.run.join("runtime")
    }
    pub fn netns(&self, id: &str) -> PathBuf {
        self.run.join("netns").join(id)
    }
    pub fn locks(&self) -> PathBuf {
        self.run.join("locks")
    }

    /// A short tag that tells this state root apart from others on the host. Host-global names
    /// (bridges, veths, the nft table, cgroups) carry it, so two roots never touch each other's.
    pub fn tag(&self) -> String {
        if self.data == Path::new("/var/lib/berth") {
            return String::new();
        }
        short_hash(self.data.to_string_lossy().as_bytes(), 6)
    }

    /// The nftables table of this root: `berth`, or `berth_<tag>` for other roots.
    pub fn nft_table(&self) -> String {
        match self.tag().as_str() {
            "" => "berth".into(),
            t => format!("berth_{t}"),
        }
    }

    /// The cgroup parent of this root's containers, below each controller's root.
    pub fn cgroup_parent(&self) -> String {
        match self.tag().as_str() {
            "" => "berth".into(),
            t => format!("berth-{t}"),
        }
    }
}

/// The first `n` hex digits of the sha256 of `data`.
pub fn short_hash(data: &[u8], n: usize) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(data);
    hex::encode(h)[..n].to_string()
}

/// A random 64-hex-digit id, like docker's container ids.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: corrupt state file: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes JSON atomically: a temp file in the same directory, then rename.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Reads JSON; `Ok(None)` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| StateError::Json {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// An exclusive lock held until dropped (std `File::lock`, released by the kernel on exit).
pub struct Lock(#[allow(dead_code)] File);

impl Lock {
    pub fn acquire(path: &Path) -> Result<Lock, StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.lock().map_err(io_err(path))?;
        Ok(Lock(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_and_tags() {
        let d = Paths::new(None);
        assert_eq!(d.nft_table(), "berth");
        let t = Paths::new(Some(Path::new("/tmp/x")));
        assert_eq!(t.run, Path::new("/tmp/x/run"));
        assert!(t.nft_table().starts_with("berth_"));
        assert_ne!(t.tag(), Paths::new(Some(Path::new("/tmp/y"))).tag());
    }

    #[test]
    fn json_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b.json");
        write_json(&p, &vec![1, 2]).unwrap();
        assert_eq!(read_json::<Vec<i32>>(&p).unwrap(), Some(vec![1, 2]));
        assert_eq!(read_json::<Vec<i32>>(&dir.path().join("no")).unwrap(), None);
    }
}
