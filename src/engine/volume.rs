//! Named volumes: `<data>/volumes/<name>/_data`, with `volume.json` beside it for labels.
use crate::state::{Paths, StateError, io_err, read_json, write_json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeRecord {
    pub name: String,
    pub created: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "invalid volume name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    Name(String),
}

fn check_name(name: &str) -> Result<(), VolumeError> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(VolumeError::Name(name.into()))
    }
}

/// Creates the volume if it does not exist; returns the directory to mount.
pub fn ensure(
    paths: &Paths,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(PathBuf, bool), VolumeError> {
    check_name(name)?;
    let dir = paths.volumes().join(name);
    let data = dir.join("_data");
    let meta = dir.join("volume.json");
    let created = read_json::<VolumeRecord>(&meta)?.is_none();
    if created {
        std::fs::create_dir_all(&data).map_err(io_err(&data))?;
        write_json(
            &meta,
            &VolumeRecord {
                name: name.into(),
                created: super::logs::now(),
                labels: labels.clone(),
            },
        )?;
    }
    Ok((data, created))
}

pub fn remove(paths: &Paths, name: &str) -> Result<bool, VolumeError> {
    check_name(name)?;
    let dir = paths.volumes().join(name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StateError::Io {
            path: dir,
            source: e,
        }
        .into()),
    }
}

pub fn list(paths: &Paths) -> Result<Vec<VolumeRecord>, VolumeError> {
    let dir = paths.volumes();
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if let Some(v) = read_json::<VolumeRecord>(&e.path().join("volume.json"))? {
                out.push(v);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The record of volume `name`, if it exists.
pub fn load(paths: &Paths, name: &str) -> Result<Option<VolumeRecord>, VolumeError> {
    check_name(name)?;
    Ok(read_json::<VolumeRecord>(
        &paths.volumes().join(name).join("volume.json"),
    )?)
}

/// The directory a volume's content lives in (its `Mountpoint`).
pub fn data_dir(paths: &Paths, name: &str) -> PathBuf {
    paths.volumes().join(name).join("_data")
}

/// The ids of the containers (in any state) that mount each volume, by volume name.
pub fn users(paths: &Paths) -> Result<BTreeMap<String, Vec<String>>, VolumeError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in super::container::list(paths)? {
        for v in c.mounts.iter().filter_map(|m| m.volume.as_ref()) {
            let ids = out.entry(v.clone()).or_default();
            if !ids.contains(&c.id) {
                ids.push(c.id.clone());
            }
        }
    }
    Ok(out)
}

/// Docker's copy-up: a named volume that is still empty gets the image's content at the
/// mount's target (files, owners, modes, links; the target directory's own owner and mode go
/// to the volume's root), unless the mount says `nocopy`. `rootfs` is the container's mounted
/// overlay, which shows only the image then. Paths in it resolve inside it (`openat2`), and
/// nothing is followed while copying ([`super::copy`]).
pub fn copy_up(
    rootfs: &std::path::Path,
    m: &super::container::Mount,
) -> Result<(), super::copy::CopyError> {
    use nix::fcntl::OFlag;
    if m.volume.is_none() || m.nocopy {
        return Ok(());
    }
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |e: nix::errno::Errno| super::copy::CopyError::Io {
            path: path.clone(),
            source: e.into(),
        }
    };
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    // Replicas made at once may share the volume: one fills it, under the volume's lock.
    let _lock = m
        .source
        .parent()
        .and_then(|dir| crate::state::Lock::acquire(&dir.join("copy-up.lock")).ok());
    let empty = std::fs::read_dir(&m.source)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty {
        return Ok(());
    }
    let root = crate::sys::fsat::open(rootfs, dir_flags).map_err(io(rootfs))?;
    let target = std::path::Path::new(&m.target);
    match crate::sys::fsat::open_in_root(root.as_fd(), target, dir_flags) {
        Ok(_) => {}
        // Nothing (or no directory) there in the image: nothing to copy.
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return Ok(()),
        Err(e) => return Err(io(target)(e)),
    }
    let volume = crate::sys::fsat::open(&m.source, dir_flags).map_err(io(&m.source))?;
    super::copy::copy(
        root.as_fd(),
        &format!("{}/.", m.target.trim_end_matches('/')),
        volume.as_fd(),
        "/",
        super::copy::Owner::Keep,
        false,
    )
}

/// What a `volume.subpath` may be: a relative path without `..`.
pub fn check_subpath(sub: &str) -> Result<(), String> {
    use std::path::Component;
    let ok = !sub.is_empty()
        && std::path::Path::new(sub)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "subpath {sub:?} must be a relative path inside the volume, without \"..\""
        ))
    }
}

/// Where a container's `subpath` mounts are staged while it is created: `<dir>/subpaths/N`.
pub fn subpaths_dir(container_dir: &std::path::Path) -> PathBuf {
    container_dir.join("subpaths")
}

/// Makes `sub` of the volume at `volume` available at `staging` without ever resolving it by
/// path again: it is opened below the volume with `openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS)` (it must exist; any symlink on the way is refused, so a container
/// cannot point the mount outside the volume by planting one), and that very file is
/// bind-mounted on `staging` through `/proc/self/fd/N`. The container's bind is then made from
/// `staging`, a path in berth's own state that no container can change, so swapping a link in
/// after the check changes nothing. `staging` is replaced if left over (a crashed start); it
/// is unmounted by [`release_subpaths`] once the container is created.
pub fn stage_subpath(
    volume: &std::path::Path,
    sub: &str,
    staging: &std::path::Path,
) -> Result<PathBuf, String> {
    use nix::fcntl::OFlag;
    use nix::mount::MsFlags;
    check_subpath(sub)?;
    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    let root = crate::sys::fsat::open(volume, flags | OFlag::O_DIRECTORY)
        .map_err(|e| format!("{}: {e}", volume.display()))?;
    let fd =
        crate::sys::fsat::open_beneath_no_symlinks(root.as_fd(), std::path::Path::new(sub), flags)
            .map_err(|e| match e {
                nix::errno::Errno::ELOOP => format!(
                    "subpath {sub:?} goes through a symbolic link; name the directory it leads to"
                ),
                nix::errno::Errno::EXDEV => format!("subpath {sub:?} leaves the volume"),
                e => format!("subpath {sub:?} of the volume: {e}"),
            })?;
    let is_dir = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .map_err(|e| format!("subpath {sub:?}: {e}"))?;
    let io = |e: std::io::Error| format!("staging subpath {sub:?} at {}: {e}", staging.display());
    // A leftover of a crashed start: unmounted, and removed without recursing.
    unmount_staged(staging);
    match std::fs::symlink_metadata(staging) {
        Ok(m) if m.is_dir() => std::fs::remove_dir(staging).map_err(io)?,
        Ok(_) => std::fs::remove_file(staging).map_err(io)?,
        Err(_) => {}
    }
    if let Some(parent) = staging.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    if is_dir {
        std::fs::create_dir(staging).map_err(io)?;
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(staging)
            .map_err(io)?;
    }
    let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    // mount(2) follows the magic link to the file the descriptor holds, not to a path.
    nix::mount::mount(
        Some(source.as_str()),
        staging,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| io(e.into()))?;
    // Private: nothing mounted later in the volume or at the staging place spreads to it.
    if let Err(e) = nix::mount::mount(
        None::<&str>,
        staging,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        unmount_staged(staging);
        return Err(io(e.into()));
    }
    Ok(staging.to_path_buf())
}

/// Unmounts and removes every staged `subpath` of a container (see [`stage_subpath`]); the
/// container's own binds, made from them, stay. Returns what could not be removed (so that
/// nobody deletes the container's directory recursively through a mount still there).
pub fn release_subpaths(container_dir: &std::path::Path) -> Vec<PathBuf> {
    let mut left = Vec::new();
    let Ok(entries) = std::fs::read_dir(subpaths_dir(container_dir)) else {
        return left;
    };
    for e in entries.flatten() {
        let path = e.path();
        unmount_staged(&path);
        // Never recursive: a mount point still there is EBUSY, not emptied.
        let gone = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir(&path),
            _ => std::fs::remove_file(&path),
        };
        if gone.is_err() {
            left.push(path);
        }
    }
    left
}

/// Unmounts whatever is mounted at `path` (by path, not through `/proc/self/mountinfo`, so a
/// state root reached through a symlink is no different), never following a symlink there.
fn unmount_staged(path: &std::path::Path) {
    use nix::mount::MntFlags;
    // Mounts stacked by repeated crashes come off one by one; EINVAL once none is left.
    for _ in 0..16 {
        if nix::mount::umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_is_idempotent_and_names_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = Paths::new(Some(d.path()));
        let (data, created) = ensure(&p, "proj_site", &BTreeMap::new()).unwrap();
        assert!(created && data.is_dir());
        std::fs::write(data.join("f"), "x").unwrap();
        assert!(!ensure(&p, "proj_site", &BTreeMap::new()).unwrap().1);
        assert!(data.join("f").exists());
        assert!(ensure(&p, "../x", &BTreeMap::new()).is_err());
        assert_eq!(list(&p).unwrap().len(), 1);
        assert!(remove(&p, "proj_site").unwrap());
    }

    #[test]
    #[allow(clippy::print_stderr)]
    fn subpaths_are_staged_by_descriptor_and_never_through_a_symlink() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting a staged subpath needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let vol = d.path().join("_data");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(vol.join("real/inner")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(vol.join("real/file"), "f").unwrap();
        std::os::unix::fs::symlink("real", vol.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("out")).unwrap();
        let ctr = d.path().join("ctr");
        let at = |n: &str| subpaths_dir(&ctr).join(n);
        for bad in ["link", "link/inner", "out", "real/../link"] {
            let err = stage_subpath(&vol, bad, &at("1")).unwrap_err();
            assert!(
                err.contains("symbolic link") || err.contains(".."),
                "{bad}: {err}"
            );
        }
        assert!(stage_subpath(&vol, "real/missing", &at("1")).is_err());
        // A directory and a file, each mounted from its descriptor.
        let staged = stage_subpath(&vol, "real/inner", &at("1")).unwrap();
        std::fs::write(staged.join("written"), "x").unwrap();
        assert!(vol.join("real/inner/written").is_file());
        let file = stage_subpath(&vol, "real/file", &at("2")).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "f");
        // Staging again over a leftover replaces it.
        stage_subpath(&vol, "real", &at("1")).unwrap();
        assert!(at("1").join("inner/written").is_file());
        assert_eq!(
            super::super::rootfs::mounts_under(&subpaths_dir(&ctr)).len(),
            2
        );
        assert!(release_subpaths(&ctr).is_empty());
        assert!(super::super::rootfs::mounts_under(&subpaths_dir(&ctr)).is_empty());
        assert!(
            std::fs::read_dir(subpaths_dir(&ctr))
                .unwrap()
                .next()
                .is_none()
        );
        assert!(
            vol.join("real/inner/written").is_file(),
            "the volume is left alone"
        );
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    }
}
