//! The init of containers with `init: true` (`berth run --init`): `berth-init`, a small
//! statically linked reaper built from `init/main.rs` and embedded in berth.
//!
//! The one decision to know: like Docker's `/sbin/docker-init`, it is bind-mounted read-only
//! from the host into the container and becomes process 1 there, with the user's command as
//! its only child. The file is installed once under the data root, named by its content hash,
//! so a newer berth never changes a file a running container has mounted.
use crate::state::{Paths, StateError, io_err};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Where the init appears in the container (Docker's path, which scripts look for).
pub const CONTAINER_PATH: &str = "/sbin/docker-init";

const BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-init"));

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "this berth was built without berth-init (no static libc at build time); init is unavailable"
    )]
    Missing,
    #[error(transparent)]
    State(#[from] StateError),
}

/// The host path of the installed init.
pub fn path(paths: &Paths) -> PathBuf {
    paths
        .data
        .join("init")
        .join(concat!("berth-init-", env!("BERTH_INIT_ID")))
}

/// The command line that runs `args` under the init.
pub fn wrap(args: &[String]) -> Vec<String> {
    let mut out = vec![CONTAINER_PATH.to_string(), "--".to_string()];
    out.extend(args.iter().cloned());
    out
}

/// Installs the init under the data root unless it is there already; returns its path.
pub fn install(paths: &Paths) -> Result<PathBuf, InitError> {
    if BINARY.is_empty() {
        return Err(InitError::Missing);
    }
    let dest = path(paths);
    if dest.is_file() {
        return Ok(dest);
    }
    let dir = dest.parent().expect("path() has a parent");
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // Written beside and renamed, so a concurrent start never mounts half a file.
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(BINARY).map_err(io_err(&tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o555))
        .map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_by_content_and_wraps_the_command() {
        let t = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(t.path()));
        if BINARY.is_empty() {
            assert!(matches!(install(&paths), Err(InitError::Missing)));
            return;
        }
        let p = install(&paths).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), BINARY);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o555
        );
        assert_eq!(install(&paths).unwrap(), p);
        assert_eq!(
            wrap(&["sh".into(), "-c".into(), "x".into()]),
            ["/sbin/docker-init", "--", "sh", "-c", "x"]
        );
    }
}
