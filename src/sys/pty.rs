//! Pseudo-terminal plumbing: a descriptor received over a unix socket (libcontainer's console
//! socket sends the pty master) and window sizes.
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Receives the one descriptor sent with `SCM_RIGHTS` on `conn`.
pub fn receive_fd(conn: &UnixStream) -> std::io::Result<OwnedFd> {
    receive_with(conn, &mut [0u8; 4096])
}

/// One `recvmsg` into `buf`, returning the descriptor that came with it.
fn receive_with(conn: &UnixStream, buf: &mut [u8]) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(std::io::Error::other("no descriptor in the message"))
}

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// Gives `pty` the window size of the terminal `from`, if `from` is one.
pub fn copy_size(from: BorrowedFd, pty: BorrowedFd) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: both ioctls read or write exactly one winsize through a valid pointer.
    unsafe {
        if get_winsize(from.as_raw_fd(), &mut ws).is_ok() && ws.ws_row > 0 {
            let _ = set_winsize(pty.as_raw_fd(), &ws);
        }
    }
}

/// Sends `fd` over `conn` with `SCM_RIGHTS`, carried by a single byte (so a reader can take it
/// with [`receive_one_fd`] and leave whatever follows on the stream untouched).
pub fn send_fd(conn: &UnixStream, fd: BorrowedFd) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"t")];
    sendmsg::<()>(
        conn.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// Receives a descriptor sent by [`send_fd`], reading its one byte and nothing after it.
pub fn receive_one_fd(conn: &UnixStream) -> std::io::Result<OwnedFd> {
    receive_with(conn, &mut [0u8; 1])
}

/// The window size (rows, columns) of the terminal `fd`, if it is one.
pub fn size(fd: BorrowedFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the ioctl writes exactly one winsize through a valid pointer.
    let ok = unsafe { get_winsize(fd.as_raw_fd(), &mut ws).is_ok() };
    (ok && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sets the window size of the pty `pty`.
pub fn set_size(pty: BorrowedFd, (rows, cols): (u16, u16)) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the ioctl reads exactly one winsize through a valid pointer.
    unsafe {
        let _ = set_winsize(pty.as_raw_fd(), &ws);
    }
}
