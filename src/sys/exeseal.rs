//! `/proc/self/exe` protection (CVE-2019-5736) for the processes that enter containers: the
//! shim (container init and healthchecks are its clones) and `berth exec`.
//!
//! A container process that gets hold of `/proc/PID/exe` of one of our processes (or of a
//! container binary that is `#!/proc/self/exe`) could otherwise open the host's berth binary for
//! writing. Before doing anything else, such a process re-executes itself from a **detached,
//! read-only bind mount** of its own binary (`open_tree(OPEN_TREE_CLONE)` +
//! `mount_setattr(MOUNT_ATTR_RDONLY)` + `execveat`). Its `/proc/self/exe` then lives on a mount
//! that no namespace can see and that refuses writes (`EROFS`). Unlike a sealed memfd copy
//! (youki's choice), this copies nothing: no memory per shim.
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// Whether `/proc/self/exe` is on a read-only mount (so nothing can write through it).
pub fn exe_is_read_only() -> bool {
    nix::sys::statvfs::statvfs("/proc/self/exe")
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// A detached, read-only (and nosuid, nodev) bind mount of this process's own binary, as an
/// `O_PATH`-like descriptor (close-on-exec). Executing it (`execveat(fd, "", AT_EMPTY_PATH)`, or
/// the path `/proc/self/fd/N` from a child) starts berth with `/proc/self/exe` on that mount.
pub fn sealed_exe() -> std::io::Result<OwnedFd> {
    let path = CString::new("/proc/self/exe").map_err(std::io::Error::other)?;
    // SAFETY: `path` is NUL-terminated and alive for the call; open_tree returns a new
    // descriptor or -1 and touches no memory of ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: open_tree just returned this descriptor; nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = CString::default();
    // SAFETY: `empty` and `attr` are valid for the call and `size_of` is the size the kernel
    // reads; the descriptor is ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tree)
}

/// Re-executes this process from a read-only mount of its binary unless it already runs from
/// one. Returns only when it does not re-execute (already sealed, or the kernel refused, with
/// the reason).
pub fn ensure_sealed() -> std::io::Result<()> {
    if exe_is_read_only() {
        return Ok(());
    }
    let tree = sealed_exe()?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv)
        })
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    // Only returns on failure.
    let err = nix::unistd::execveat(
        Some(tree.as_raw_fd()),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    Err(err.into())
}
