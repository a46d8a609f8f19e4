//! File-descriptor-relative filesystem calls that nix 0.29 exposes only as raw fds, plus the
//! extended-attribute calls nix lacks. Layer unpacking builds on these to stay inside a root.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Opens `path` below `root` with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: every
/// symlink and `..` met on the way is resolved as if `root` were `/`, so the result is always
/// inside `root`. `O_CLOEXEC` is added.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(root.as_raw_fd(), path, how)?;
    // SAFETY: openat2 just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `path` below `root` with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS)`: a path that would leave `root` fails with `EXDEV`, and one that
/// meets a symlink anywhere (the last component included) with `ELOOP`. `O_CLOEXEC` is added.
pub fn open_beneath_no_symlinks(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
) -> nix::Result<OwnedFd> {
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    let fd = nix::fcntl::openat2(root.as_raw_fd(), path, how)?;
    // SAFETY: openat2 just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)` returning an owned descriptor.
pub fn open_at(dir: BorrowedFd<'_>, name: &Path, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat(Some(dir.as_raw_fd()), name, flags | OFlag::O_CLOEXEC, mode)?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fsetxattr(fd, name, value, 0)`.
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a NUL-terminated string and `value` a valid buffer of `value.len()`
    // bytes, both alive for the duration of the call; the kernel only reads them.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `lgetxattr(path, name)`: the attribute's value, or `None` when it is not set. Does not follow
/// a final symlink.
pub fn lgetxattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and alive; `buf` is writable for `buf.len()`
    // bytes and the kernel writes at most that many.
    let rc = unsafe {
        libc::lgetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if rc >= 0 {
        buf.truncate(rc as usize);
        return Ok(Some(buf));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENODATA) {
        Ok(None)
    } else {
        Err(err)
    }
}

/// `open(path, flags | O_CLOEXEC)` returning an owned descriptor.
pub fn open(path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, Mode::empty())?;
    // SAFETY: open just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `path` (not followed if a symlink) is the root of a mount, from `statx`'s
/// `STATX_ATTR_MOUNT_ROOT`: one call, where reading `/proc/self/mountinfo` grows with every
/// mount on the host (an `up` of many containers read it once per container). `None` when the
/// kernel does not report the attribute (before 5.8), `Some(false)` when `path` is missing.
pub fn is_mount_root(path: &Path) -> Option<bool> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is plain data; zeroed is a valid value for it.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid, writable statx buffer.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            libc::STATX_BASIC_STATS,
            &mut st,
        )
    };
    if r != 0 {
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => Some(false),
            _ => None,
        };
    }
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    (st.stx_attributes_mask & bit != 0).then_some(st.stx_attributes & bit != 0)
}

/// Creates directory `dir` (and its parents) when missing, and asks the filesystem to spread
/// the directories made in it over the disk's block groups (ext4's `FS_TOPDIR_FL`, what
/// `chattr +T` sets; the Orlov allocator then treats it as it treats `/`).
///
/// Why: on ext4 without a journal, each new inode skips every inode of its group freed in the
/// last minutes (`recently_deleted`), one buffer lookup each. Containers made and removed by
/// the hundred all in one group made a 50-service `up` after a `down` spend a quarter of its
/// CPU there. Spread, each container's files land in a group of their own. A filesystem
/// without the flag (tmpfs, xfs, btrfs) refuses it, which is fine: it is only a hint.
pub fn spread_subdirs(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let f = std::fs::File::open(dir)?;
    const FS_TOPDIR_FL: libc::c_long = 0x0002_0000;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes at most a long into `flags`, which outlives the call.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return Ok(());
    }
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(());
    }
    // The kernel reads an int's worth of flags; the rest of the long is ours and zero.
    flags = (flags & 0xffff_ffff) | FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS only reads the flags from `flags`, which outlives the call.
    unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) };
    Ok(())
}

/// `create_dir_all`, with each directory it makes given `mode` whatever the process's umask.
/// What a container sees (its root, a volume, a bind source berth made) must have Docker's
/// modes, which come from dockerd's umask (022), not from the one of whoever runs berth.
pub fn create_dirs_with_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dirs_with_mode(parent, mode)?;
    }
    match std::fs::create_dir(path) {
        Ok(()) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}
