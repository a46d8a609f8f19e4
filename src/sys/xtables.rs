//! Reading a legacy iptables table straight from the kernel (`IPT_SO_GET_INFO` and
//! `IPT_SO_GET_ENTRIES`, their `IP6T_` twins), as `iptables-legacy -S` does, without running
//! it. `net::iptsock` interprets what comes back.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `ipt_getinfo` / `ip6t_getinfo`: the hooks and where each chain starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableInfo {
    pub valid_hooks: u32,
    pub hook_entry: [u32; 5],
    pub underflow: [u32; 5],
    pub size: u32,
}

const SO_GET_INFO: libc::c_int = 64;
const SO_GET_ENTRIES: libc::c_int = 65;
const NAME_LEN: usize = 32;
/// `sizeof(struct ipt_getinfo)`.
const INFO_LEN: usize = 84;
/// `offsetof(struct ipt_get_entries, entrytable)`: the name, the size, padding to 8.
const ENTRIES_AT: usize = 40;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The info and the entries blob of table `name` (`filter`), IPv6 when `v6`.
pub fn read_table(v6: bool, name: &str) -> io::Result<(TableInfo, Vec<u8>)> {
    if name.len() >= NAME_LEN {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let (domain, level) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_IPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_IP)
    };
    // SAFETY: plain socket(2); the descriptor is owned right below.
    let raw = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket(2) just returned it and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut info = [0u8; INFO_LEN];
    info[..name.len()].copy_from_slice(name.as_bytes());
    let mut len = INFO_LEN as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which is that long.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            SO_GET_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != INFO_LEN {
        return Err(io::Error::from(io::ErrorKind::InvalidData));
    }
    let five = |at: usize| std::array::from_fn(|i| u32_at(&info, at + 4 * i));
    let table = TableInfo {
        valid_hooks: u32_at(&info, 32),
        hook_entry: five(36),
        underflow: five(56),
        size: u32_at(&info, 80),
    };
    let mut buf = vec![0u8; ENTRIES_AT + table.size as usize];
    buf[..name.len()].copy_from_slice(name.as_bytes());
    buf[NAME_LEN..NAME_LEN + 4].copy_from_slice(&table.size.to_ne_bytes());
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `buf`, which is that long.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            SO_GET_ENTRIES,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        // EAGAIN: the table changed between the two calls.
        return Err(io::Error::last_os_error());
    }
    buf.drain(..ENTRIES_AT);
    Ok((table, buf))
}
