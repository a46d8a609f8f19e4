//! `berth-init`: the process 1 of a container with `init: true` (Docker's `docker-init`, tini).
//!
//! It starts the command given after `--` in its own process group, forwards every signal it
//! receives to it, reaps every process that the kernel reparents to it (orphans whose parent
//! did not wait for them), and exits with the command's exit code (128 + N when signal N
//! killed it) as soon as the command is gone.
//!
//! The one decision to know: this is a separate, statically linked program (built by
//! `build.rs` with `+crt-static` and embedded into berth), not a mode of the berth binary,
//! because berth links glibc dynamically and a container image need not have a loader or
//! libc. It depends on nothing but std, so the few libc calls std does not wrap are declared
//! here; they are the only `unsafe` outside `src/sys`.
#![deny(unsafe_op_in_unsafe_fn)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// glibc's `sigset_t` on Linux: 1024 bits.
#[repr(C)]
struct SigSet([u64; 16]);

const SIG_SETMASK: i32 = 2;
const WNOHANG: i32 = 1;
const ECHILD: i32 = 10;
const SIGCHLD: i32 = 17;
/// Signals that report a fault of this process itself; blocking them would hide a crash.
const SYNCHRONOUS: [i32; 7] = [4, 5, 6, 7, 8, 11, 31]; // ILL TRAP ABRT BUS FPE SEGV SYS

unsafe extern "C" {
    fn sigfillset(set: *mut SigSet) -> i32;
    fn sigdelset(set: *mut SigSet, sig: i32) -> i32;
    fn sigprocmask(how: i32, set: *const SigSet, old: *mut SigSet) -> i32;
    fn sigwaitinfo(set: *const SigSet, info: *mut u8) -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd: &[String] = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => &args,
    };
    if cmd.is_empty() {
        fail("usage: berth-init -- COMMAND [ARG...]");
        return ExitCode::from(1);
    }
    let mut set = SigSet([0; 16]);
    // SAFETY: `set` is a valid, writable sigset_t-sized buffer for the duration of each call,
    // and sigprocmask only reads it.
    unsafe {
        sigfillset(&mut set);
        for s in SYNCHRONOUS {
            sigdelset(&mut set, s);
        }
        sigprocmask(SIG_SETMASK, &set, std::ptr::null_mut());
    }
    let mut command = Command::new(&cmd[0]);
    command.args(&cmd[1..]).process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only makes one
    // async-signal-safe call on a stack value.
    unsafe {
        command.pre_exec(|| {
            // The command starts with no signal blocked (std keeps the parent's mask).
            let none = SigSet([0; 16]);
            sigprocmask(SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        })
    };
    let child = match command.spawn()
    {
        Ok(c) => c.id() as i32,
        Err(e) => {
            fail(&format!("exec {}: {e}", cmd[0]));
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return ExitCode::from(code);
        }
    };
    loop {
        // SAFETY: `set` is initialised above; a null info pointer is allowed.
        let sig = unsafe { sigwaitinfo(&set, std::ptr::null_mut()) };
        if sig < 0 {
            continue; // EINTR
        }
        if sig != SIGCHLD {
            // SAFETY: plain syscall on a pid we started; a failure (already gone) is harmless.
            unsafe { kill(child, sig) };
            continue;
        }
        if let Some(code) = reap(child) {
            return ExitCode::from(code);
        }
    }
}

/// Reaps every exited process; returns the exit code once `child` is among them.
fn reap(child: i32) -> Option<u8> {
    let mut code = None;
    loop {
        let mut status = 0i32;
        // SAFETY: `status` is a valid out pointer for the call.
        let pid = unsafe { waitpid(-1, &mut status, WNOHANG) };
        if pid <= 0 {
            if pid < 0 && std::io::Error::last_os_error().raw_os_error() != Some(ECHILD) {
                continue;
            }
            return code;
        }
        if pid == child {
            // WIFEXITED: low 7 bits zero; else killed by the signal in the low 7 bits.
            code = Some(if status & 0x7f == 0 {
                ((status >> 8) & 0xff) as u8
            } else {
                (128 + (status & 0x7f)) as u8
            });
        }
    }
}

fn fail(msg: &str) {
    let _ = writeln!(std::io::stderr(), "berth-init: {msg}");
}
