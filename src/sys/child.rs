//! The few calls of a container's init (`engine::launch`) that need `unsafe`: the clone
//! itself, the descriptors it inherits, and calls nix 0.29 does not wrap.
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Runs `f` in a child made by `clone(2)` with `flags` (new namespaces) on a stack of its
/// own; the child ends with `f`'s value. The child is a copy of this process (no shared
/// memory), so it may read whatever `f` borrows.
pub fn clone_child<'a>(
    flags: nix::sched::CloneFlags,
    f: Box<dyn FnMut() -> isize + 'a>,
) -> nix::Result<nix::unistd::Pid> {
    let mut stack = vec![0u8; 512 * 1024];
    // SAFETY: without CLONE_VM the child gets its own copy of this address space: `f` and
    // what it borrows stay valid there, and the stack is a live allocation of ours. The
    // child never returns into our frames: the callback's value ends it.
    unsafe { nix::sched::clone(f, &mut stack, flags, Some(libc::SIGCHLD)) }
}

/// Takes ownership of descriptor `fd`, which this process has open and nothing else owns
/// (a clone's copy of its parent's pipe ends).
pub fn adopt_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: per the contract above, `fd` is open and owned by no other object.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `setdomainname(2)`.
pub fn set_domainname(name: &str) -> std::io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which the kernel only reads.
    let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Marks every descriptor from `first` on close-on-exec (`close_range(2)`).
pub fn cloexec_from(first: u32) -> std::io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags in our descriptor table.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Ends the process at once (`_exit(2)`): no exit handlers, no flushing of state copied from
/// the parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes a status and does not return.
    unsafe { libc::_exit(code) }
}

/// `setgroups(2)`, `setresgid(2)` and `setresuid(2)` as system calls, for this thread only.
/// glibc's wrappers apply them to every thread it knows of, and in a clone of a
/// multi-threaded process it still knows the parent's threads: it would wait for them
/// forever.
pub fn set_ids(groups: &[u32], gid: u32, uid: u32) -> std::io::Result<()> {
    let check = |r: libc::c_long| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the pointer and length describe `groups`, which the kernel only reads.
    check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) })?;
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })?;
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
}
