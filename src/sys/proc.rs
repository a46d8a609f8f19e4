//! Processes by pid, safely: a pid is only trusted together with its start time, so a pid the
//! kernel has reused for another process is never signalled.
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The start time of `pid` (field 22 of `/proc/PID/stat`, in clock ticks since boot), or `None`
/// when it does not exist or is a zombie.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state); field 22 is index 19.
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the process `pid`, started at `start`, is still alive.
pub fn alive(pid: Option<i32>, start: Option<u64>) -> bool {
    match (pid, start) {
        (Some(p), Some(s)) if p > 0 => start_time(p) == Some(s),
        _ => false,
    }
}

/// Sends `sig` to `pid` only if it is still the process that started at `start`.
pub fn signal(pid: Option<i32>, start: Option<u64>, sig: Signal) -> bool {
    if !alive(pid, start) {
        return false;
    }
    pid.is_some_and(|p| kill(Pid::from_raw(p), sig).is_ok())
}

/// A pidfd for `pid`: readable once the process has ended.
pub fn pidfd_open(pid: i32) -> Result<std::os::fd::OwnedFd, nix::errno::Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory
    // is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits up to `timeout` for the process `pid` (started at `start`) to end; returns at once
/// when it is gone already. A pidfd makes the wake-up immediate, where a sleep-and-look loop
/// would add half its period on average. Falls back to sleeping when pidfds are unavailable.
pub fn wait_exit(pid: Option<i32>, start: Option<u64>, timeout: std::time::Duration) {
    use std::os::fd::AsFd;
    let Some(p) = pid.filter(|p| *p > 0) else {
        return;
    };
    let fd = match pidfd_open(p) {
        Ok(fd) => fd,
        Err(e) => {
            // No such process: nothing to wait for. Otherwise (no pidfds here) sleep instead.
            if e != nix::errno::Errno::ESRCH {
                std::thread::sleep(timeout);
            }
            return;
        }
    };
    // Checked after opening: the pidfd now pins this pid, so the start time says whether it
    // is the process meant, not a reuse of its number.
    if !alive(pid, start) {
        return;
    }
    let mut fds = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
}

/// Waits until the process `pid` (started at `start`) is gone, at most `timeout`; whether it
/// is gone.
pub fn wait_gone(pid: Option<i32>, start: Option<u64>, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if !alive(pid, start) {
            return true;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        // Bounded: a pid whose pidfd cannot be had is looked at again soon.
        wait_exit(pid, start, left.min(std::time::Duration::from_millis(200)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_exit_returns_when_the_process_ends_not_at_the_timeout() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.1")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let st = start_time(pid);
        let t = std::time::Instant::now();
        wait_exit(Some(pid), st, std::time::Duration::from_secs(20));
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            t.elapsed()
        );
        child.wait().unwrap();
        // Gone (reaped): immediate.
        let t = std::time::Instant::now();
        wait_exit(Some(pid), st, std::time::Duration::from_secs(20));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn own_process_is_alive_and_others_are_not() {
        let me = std::process::id() as i32;
        let st = start_time(me);
        assert!(st.is_some());
        assert!(alive(Some(me), st));
        assert!(!alive(Some(me), st.map(|s| s + 1)));
        assert!(!alive(None, st));
    }
}
