//! Loading a ready seccomp BPF program.

/// Installs `code` (classic BPF instructions, 8 bytes each) as a seccomp filter of the calling
/// thread, with `seccomp(2)` `flags`. Needs `no_new_privs` or `CAP_SYS_ADMIN`.
pub fn load_filter(code: &[u8], flags: u32) -> std::io::Result<()> {
    let len = code.len() / std::mem::size_of::<libc::sock_filter>();
    if code.is_empty()
        || !code
            .len()
            .is_multiple_of(std::mem::size_of::<libc::sock_filter>())
    {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let len = u16::try_from(len).map_err(|_| std::io::Error::from_raw_os_error(libc::E2BIG))?;
    let prog = libc::sock_fprog {
        len,
        filter: code.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` describes `len` instructions that lie within `code`, which outlives the
    // call; the kernel only reads (copies) them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
