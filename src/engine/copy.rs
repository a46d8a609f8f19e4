//! `berth cp`: files between the host and a container, in both directions, with Docker's rules
//! for where a copy lands.
//!
//! The one thing to know: every path on the container side is resolved by `openat2` with
//! `RESOLVE_IN_ROOT` on a descriptor of the container's root, and every entry below it is
//! opened relative to its parent's descriptor with `O_NOFOLLOW`, so no symlink (and no
//! symlink swapped in during the copy, CVE-2018-15664) leads out of the container. A running
//! container's root is `/proc/PID/root`, which also shows its volumes; a stopped one's is its
//! overlay mount.
use super::container::{ContainerRecord, Status, load_state};
use crate::state::Paths;
use crate::sys::fsat::open_in_root;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not find the file {} in container {name}", path.display())]
    NotFound { name: String, path: PathBuf },
    #[error("cannot copy directory {} onto the file {}", src.display(), dst.display())]
    DirOntoFile { src: PathBuf, dst: PathBuf },
    #[error("destination directory {} does not exist", path.display())]
    NoDestDir { path: PathBuf },
    #[error("container {name} has no root filesystem (was it removed?)")]
    NoRoot { name: String },
}

/// Who owns what the copy creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The source's uid and gid (`cp -a`).
    Keep,
    /// This uid and gid (Docker's default: root in the container, the caller on the host).
    Set(u32, u32),
}

/// A descriptor of the container's `/`: its init's root while it runs, else its rootfs.
pub fn container_root(paths: &Paths, rec: &ContainerRecord) -> Result<OwnedFd, CopyError> {
    let st = load_state(paths, &rec.id).map_err(|e| CopyError::Io {
        path: rec.dir(paths),
        source: std::io::Error::other(e.to_string()),
    })?;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if st.status == Status::Running
        && let Some(pid) = st.pid
    {
        let p = PathBuf::from(format!("/proc/{pid}/root"));
        if let Ok(fd) = crate::sys::fsat::open(&p, flags)
            // Still the same process after opening: the descriptor is its root.
            && crate::sys::proc::alive(st.pid, st.pid_start)
        {
            return Ok(fd);
        }
    }
    let rootfs = rec.dir(paths).join("rootfs");
    if super::rootfs::mounts_under(&rootfs).is_empty() {
        return Err(CopyError::NoRoot {
            name: rec.name.clone(),
        });
    }
    crate::sys::fsat::open(&rootfs, flags).map_err(io(&rootfs))
}

/// The host's `/`, so host paths go through the same code (resolving in `/` is plain
/// resolution).
pub fn host_root() -> Result<OwnedFd, CopyError> {
    crate::sys::fsat::open(Path::new("/"), OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(io(Path::new("/")))
}

fn io(path: &Path) -> impl Fn(Errno) -> CopyError + '_ {
    move |e| CopyError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Splits `a/b/c` into (`a/b`, `c`); `/`, `x/.` and `x/` name the directory itself (`.`).
fn split(path: &str) -> (PathBuf, PathBuf) {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return (PathBuf::from("/"), PathBuf::from("."));
    }
    if let Some(dir) = trimmed.strip_suffix("/.") {
        return (
            PathBuf::from(if dir.is_empty() { "/" } else { dir }),
            ".".into(),
        );
    }
    let p = Path::new(trimmed);
    let parent = p
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    (parent, p.file_name().map_or(".".into(), PathBuf::from))
}

/// Copies `src` under `src_root` to `dst` under `dst_root`, as `docker cp` does: into `dst`
/// when it is a directory (the contents only when `src` ends in `/.`), else as `dst`.
/// `follow` (`cp -L`) copies what `src` itself links to, resolved inside `src_root`, under the
/// link's name; symlinks below it are copied as symlinks either way.
pub fn copy(
    src_root: BorrowedFd<'_>,
    src: &str,
    dst_root: BorrowedFd<'_>,
    dst: &str,
    owner: Owner,
    follow: bool,
) -> Result<(), CopyError> {
    let (sp, sn) = split(src);
    let mut src_dir =
        open_in_root(src_root, &sp, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(io(&sp))?;
    let mut st =
        nix::sys::stat::fstatat(Some(src_dir.as_raw_fd()), &sn, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(io(Path::new(src)))?;
    // The entry that is read: `sn` in `src_dir`, or where its links lead with `follow`.
    let mut from = sn.clone();
    let mut from_dir = sp.clone();
    let mut hops = 0;
    while follow && kind(&st) == SFlag::S_IFLNK {
        hops += 1;
        if hops > 40 {
            return Err(io(Path::new(src))(Errno::ELOOP));
        }
        let target = nix::fcntl::readlinkat(Some(src_dir.as_raw_fd()), &from).map_err(io(&from))?;
        // An absolute target is resolved in the root, like every other path here.
        let next = from_dir.join(&target);
        let (p, n) = split(&next.to_string_lossy());
        src_dir = open_in_root(src_root, &p, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(io(&p))?;
        st = nix::sys::stat::fstatat(Some(src_dir.as_raw_fd()), &n, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(io(&next))?;
        (from_dir, from) = (p, n);
    }
    let is_dir = kind(&st) == SFlag::S_IFDIR;
    match open_in_root(dst_root, Path::new(dst), OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(d) => {
            let name = if sn == Path::new(".") {
                // `/` or `dir/.`: its contents go into the destination.
                PathBuf::from(".")
            } else {
                sn.clone()
            };
            entry(src_dir.as_fd(), &from, d.as_fd(), &name, owner)
        }
        Err(Errno::ENOENT) => {
            if dst.ends_with('/') && !is_dir {
                return Err(CopyError::NoDestDir { path: dst.into() });
            }
            let (dp, dn) = split(dst);
            let d = open_in_root(dst_root, &dp, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(|_| CopyError::NoDestDir { path: dp.clone() })?;
            entry(src_dir.as_fd(), &from, d.as_fd(), &dn, owner)
        }
        Err(Errno::ENOTDIR) if is_dir => Err(CopyError::DirOntoFile {
            src: src.into(),
            dst: dst.into(),
        }),
        Err(Errno::ENOTDIR) => {
            let (dp, dn) = split(dst);
            let d =
                open_in_root(dst_root, &dp, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(io(&dp))?;
            entry(src_dir.as_fd(), &from, d.as_fd(), &dn, owner)
        }
        Err(e) => Err(io(Path::new(dst))(e)),
    }
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Copies the entry `sname` of directory `sdir` to `dname` in `ddir`, recursively. Nothing is
/// ever followed: entries are opened with `O_NOFOLLOW` relative to their parent.
fn entry(
    sdir: BorrowedFd<'_>,
    sname: &Path,
    ddir: BorrowedFd<'_>,
    dname: &Path,
    owner: Owner,
) -> Result<(), CopyError> {
    let st = nix::sys::stat::fstatat(Some(sdir.as_raw_fd()), sname, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(io(sname))?;
    let (uid, gid) = match owner {
        Owner::Keep => (st.st_uid, st.st_gid),
        Owner::Set(u, g) => (u, g),
    };
    let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
    let existing =
        nix::sys::stat::fstatat(Some(ddir.as_raw_fd()), dname, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    let existing_dir = existing.as_ref().is_some_and(|e| kind(e) == SFlag::S_IFDIR);
    let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match kind(&st) {
        SFlag::S_IFDIR => {
            if existing.is_some() && !existing_dir {
                return Err(CopyError::DirOntoFile {
                    src: sname.into(),
                    dst: dname.into(),
                });
            }
            if existing.is_none() {
                nix::sys::stat::mkdirat(
                    Some(ddir.as_raw_fd()),
                    dname,
                    Mode::from_bits_truncate(0o700),
                )
                .map_err(io(dname))?;
            }
            let s = open_at(sdir, sname, OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow)?;
            let d = open_at(ddir, dname, OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow)?;
            // Listing through our own descriptor names exactly the directory we opened.
            let list = format!("/proc/self/fd/{}", s.as_raw_fd());
            let names = std::fs::read_dir(&list).map_err(|source| CopyError::Io {
                path: sname.into(),
                source,
            })?;
            for n in names {
                let n = n.map_err(|source| CopyError::Io {
                    path: sname.into(),
                    source,
                })?;
                let name = PathBuf::from(n.file_name());
                entry(s.as_fd(), &name, d.as_fd(), &name, owner)?;
            }
            finish(&d, mode, uid, gid, &st, dname)
        }
        SFlag::S_IFREG => {
            let s = open_at(sdir, sname, OFlag::O_RDONLY | nofollow)?;
            if existing.is_some()
                && (existing_dir || kind(existing.as_ref().unwrap_or(&st)) != SFlag::S_IFREG)
            {
                if existing_dir {
                    return Err(CopyError::Io {
                        path: dname.into(),
                        source: std::io::Error::other("a directory is in the way"),
                    });
                }
                // A symlink or special file in the way is replaced, never written through.
                unlink(ddir, dname)?;
            }
            let d = crate::sys::fsat::open_at(
                ddir,
                dname,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(io(dname))?;
            let (mut sf, mut df) = (File::from(s), File::from(d));
            std::io::copy(&mut sf, &mut df).map_err(|source| CopyError::Io {
                path: dname.into(),
                source,
            })?;
            finish(&df.into(), mode, uid, gid, &st, dname)
        }
        SFlag::S_IFLNK => {
            let target =
                nix::fcntl::readlinkat(Some(sdir.as_raw_fd()), sname).map_err(io(sname))?;
            if existing_dir {
                return Err(CopyError::Io {
                    path: dname.into(),
                    source: std::io::Error::other("a directory is in the way"),
                });
            }
            if existing.is_some() {
                unlink(ddir, dname)?;
            }
            nix::unistd::symlinkat(target.as_os_str(), Some(ddir.as_raw_fd()), dname)
                .map_err(io(dname))?;
            nix::unistd::fchownat(
                Some(ddir.as_raw_fd()),
                dname,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(io(dname))
        }
        // Devices, fifos and sockets are not copied, as with `docker cp` into a directory.
        _ => Ok(()),
    }
}

fn open_at(dir: BorrowedFd<'_>, name: &Path, flags: OFlag) -> Result<OwnedFd, CopyError> {
    crate::sys::fsat::open_at(dir, name, flags, Mode::empty()).map_err(io(name))
}

fn unlink(dir: BorrowedFd<'_>, name: &Path) -> Result<(), CopyError> {
    nix::unistd::unlinkat(
        Some(dir.as_raw_fd()),
        name,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    )
    .map_err(io(name))
}

/// Owner, mode (after the owner, so set-id bits survive) and times of a copied file or dir.
fn finish(
    fd: &OwnedFd,
    mode: Mode,
    uid: u32,
    gid: u32,
    st: &FileStat,
    name: &Path,
) -> Result<(), CopyError> {
    nix::unistd::fchown(
        fd.as_raw_fd(),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )
    .map_err(io(name))?;
    nix::sys::stat::fchmod(fd.as_raw_fd(), mode).map_err(io(name))?;
    let t = |s: i64, ns: i64| nix::sys::time::TimeSpec::new(s, ns);
    let _ = nix::sys::stat::futimens(
        fd.as_raw_fd(),
        &t(st.st_atime, st.st_atime_nsec),
        &t(st.st_mtime, st.st_mtime_nsec),
    );
    Ok(())
}

/// A host path made absolute against the current directory.
pub fn host_path(p: &str) -> String {
    if p.starts_with('/') {
        return p.to_string();
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut s = cwd.join(p).as_os_str().as_bytes().to_vec();
    // Keep a trailing `/` or `/.`: they carry meaning for `cp`.
    if p.ends_with('/') && !s.ends_with(b"/") {
        s.push(b'/');
    }
    OsStr::from_bytes(&s).to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_like_docker_cp() {
        let s = |p: &str| {
            let (a, b) = split(p);
            (a.display().to_string(), b.display().to_string())
        };
        assert_eq!(s("/etc/hosts"), ("/etc".into(), "hosts".into()));
        assert_eq!(s("/etc/"), ("/".into(), "etc".into()));
        assert_eq!(s("/etc/."), ("/etc".into(), ".".into()));
        assert_eq!(s("/"), ("/".into(), ".".into()));
        assert_eq!(s("f"), (".".into(), "f".into()));
    }

    #[test]
    fn copies_stay_inside_the_root_and_keep_owners_with_archive() {
        let host = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let outside = host.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        // The "container" links out of itself in every way it can.
        std::os::unix::fs::symlink(&outside, root.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("passwd-link")).unwrap();
        std::fs::write(root.path().join("data"), "inside").unwrap();
        let rfd = crate::sys::fsat::open(root.path(), OFlag::O_PATH | OFlag::O_DIRECTORY).unwrap();
        let hfd = host_root().unwrap();
        let src = host.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), "hello").unwrap();
        nix::unistd::chown(
            &src.join("f"),
            Some(Uid::from_raw(1234)),
            Some(Gid::from_raw(5678)),
        )
        .ok();
        // Into the container through the symlink: lands at the container's /outside... no:
        // `escape` resolves to `/<host tmp>/outside` inside the root, which does not exist.
        let err = copy(
            hfd.as_fd(),
            src.to_str().unwrap(),
            rfd.as_fd(),
            "/escape/x",
            Owner::Keep,
            false,
        );
        assert!(err.is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        copy(
            hfd.as_fd(),
            src.to_str().unwrap(),
            rfd.as_fd(),
            "/",
            Owner::Keep,
            false,
        )
        .unwrap();
        let copied = root.path().join("src/f");
        assert_eq!(std::fs::read_to_string(&copied).unwrap(), "hello");
        if nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(&copied).unwrap();
            assert_eq!((m.uid(), m.gid()), (1234, 5678));
        }
        // Out of the container: a symlink is copied as a symlink, never followed.
        let out = host.path().join("got");
        copy(
            rfd.as_fd(),
            "/passwd-link",
            hfd.as_fd(),
            out.to_str().unwrap(),
            Owner::Set(0, 0),
            false,
        )
        .unwrap();
        assert!(
            std::fs::symlink_metadata(&out)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // A file in the way that is a symlink is replaced, not written through.
        std::os::unix::fs::symlink(outside.join("victim"), host.path().join("dst")).unwrap();
        copy(
            rfd.as_fd(),
            "/data",
            hfd.as_fd(),
            host.path().join("dst").to_str().unwrap(),
            Owner::Keep,
            false,
        )
        .unwrap();
        assert!(!outside.join("victim").exists());
        assert_eq!(
            std::fs::read_to_string(host.path().join("dst")).unwrap(),
            "inside"
        );
        // Contents only with `/.`.
        let into = host.path().join("into");
        std::fs::create_dir(&into).unwrap();
        copy(
            rfd.as_fd(),
            "/src/.",
            hfd.as_fd(),
            into.to_str().unwrap(),
            Owner::Keep,
            false,
        )
        .unwrap();
        assert!(into.join("f").exists());

        // -L: the source link is followed, inside the root, and the copy takes the link's name.
        std::os::unix::fs::symlink("/data", root.path().join("abs-link")).unwrap();
        std::os::unix::fs::symlink("abs-link", root.path().join("rel-link")).unwrap();
        let followed = host.path().join("followed");
        copy(
            rfd.as_fd(),
            "/rel-link",
            hfd.as_fd(),
            followed.to_str().unwrap(),
            Owner::Keep,
            true,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&followed).unwrap(), "inside");
        copy(
            rfd.as_fd(),
            "/rel-link",
            hfd.as_fd(),
            into.to_str().unwrap(),
            Owner::Keep,
            true,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(into.join("rel-link")).unwrap(),
            "inside"
        );
        // A link to the host's /etc/passwd means the container's, which does not exist.
        assert!(
            copy(
                rfd.as_fd(),
                "/passwd-link",
                hfd.as_fd(),
                host.path().join("nope").to_str().unwrap(),
                Owner::Keep,
                true,
            )
            .is_err()
        );
        assert!(!host.path().join("nope").exists());
    }
}
