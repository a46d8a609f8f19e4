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

#[cfg(test)]
mod tests {
    use super::*;

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
