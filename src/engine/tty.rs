//! Terminals of container processes: the pty master that libcontainer sends over a console
//! socket, and the relay between it and the caller's terminal (raw mode, window size and
//! `SIGWINCH`, restored on the way out).
//!
//! The one decision to know: the pty is created inside the container (its devpts), so the
//! process sees `/dev/pts/N` of its own; berth only holds the master and copies bytes.
use crate::sys::pty::copy_size;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Puts the terminal on stdin in raw mode until dropped.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// Copies stdin to `master` and `master` to stdout until the container side closes (every
/// process holding the pty's slave is gone), following the window size of our terminal.
pub fn relay(master: OwnedFd) {
    relay_with(&master, None, true);
}

/// [`relay`], with the output read from `output` instead of the master (a container's shim
/// reads the master, logs it and forwards it there) until its end of file; stdin is copied to
/// the master only when `input`.
pub fn relay_with(master: &OwnedFd, output: Option<BorrowedFd>, input: bool) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let source = output.unwrap_or(master.as_fd());
    // Blocked before the size is first copied, so no resize falls between the two.
    let mut winch = SigSet::empty();
    winch.add(Signal::SIGWINCH);
    let _ = winch.thread_block();
    let sfd = SignalFd::with_flags(&winch, SfdFlags::SFD_CLOEXEC).ok();
    copy_size(stdout.as_fd(), master.as_fd());
    let _raw = RawMode::enter();
    let mut stdin_open = input;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let mut fds = vec![PollFd::new(source, PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let sfd_at = fds.len();
        if let Some(s) = &sfd {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (source_ready, stdin_ready, winch_ready) = (
            ready(0),
            stdin_open && ready(1),
            sfd.is_some() && ready(sfd_at),
        );
        drop(fds);
        if winch_ready {
            if let Some(s) = &sfd {
                let _ = s.read_signal();
            }
            copy_size(stdout.as_fd(), master.as_fd());
        }
        if stdin_ready {
            match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if write_all(master.as_fd(), &buf[..n]).is_err() {
                        stdin_open = false;
                    }
                }
            }
        }
        if source_ready {
            // EIO from a master: the last holder of the slave closed it.
            match nix::unistd::read(source.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let _ = write_all(stdout.as_fd(), &buf[..n]);
                }
            }
        }
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
