//! `berth run` on a terminal: a pseudo-terminal for the container by default (`-T` disables
//! it), input typed on the caller's terminal reaches the process, the window size follows, and
//! the exit code comes back. The caller's terminal here is a pty the test opens; `setsid -c`
//! makes it berth's controlling terminal, so resizing it sends berth `SIGWINCH`.
#![allow(clippy::print_stderr)]
mod util;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;
use util::Env;
use util::terminal::{Terminal, have_tools};

const COMPOSE: &str = "services:\n  box:\n    image: busybox\n    command: [sleep, \"1000\"]\n";

#[test]
fn run_on_a_terminal_gets_a_terminal_typed_input_the_window_size_and_the_exit_code() {
    require_root!();
    if !have_tools() {
        return;
    }
    let env = Env::new("runtty");
    env.write("compose.yaml", COMPOSE);
    let mut t = Terminal::start(
        &env,
        &[
            "run",
            "--rm",
            "box",
            "sh",
            "-c",
            "tty; echo TERM=$TERM; stty size; echo ready; read x; stty size; echo got $x; exit 3",
        ],
        (13, 71),
    );
    t.expect("ready");
    assert!(t.seen().contains("/dev/pts/0"), "{}", t.seen());
    assert!(t.seen().contains("TERM=xterm"), "{}", t.seen());
    assert!(
        t.seen().contains("13 71"),
        "the pty did not start at the caller's size: {}",
        t.seen()
    );
    t.resize(21, 93);
    t.send("hello\n");
    t.expect("got hello");
    let (code, seen) = t.finish();
    assert_eq!(code, Some(3), "{seen}");
    assert!(seen.contains("21 93"), "the size did not follow: {seen}");
    // --rm: nothing left of the one-off.
    assert!(env.ok(&["ps", "-a", "-q"]).trim().is_empty());
}

#[test]
fn run_with_no_tty_on_a_terminal_passes_the_terminal_as_stdin() {
    require_root!();
    if !have_tools() {
        return;
    }
    let env = Env::new("runnotty");
    env.write("compose.yaml", COMPOSE);
    let mut t = Terminal::start(
        &env,
        &[
            "run",
            "-T",
            "--rm",
            "box",
            "sh",
            "-c",
            "tty; echo ready; read x; echo got $x",
        ],
        (24, 80),
    );
    t.expect("ready");
    assert!(t.seen().contains("not a tty"), "{}", t.seen());
    t.send("typed\n");
    t.expect("got typed");
    let (code, seen) = t.finish();
    assert_eq!(code, Some(0), "{seen}");
}

#[test]
fn run_with_a_terminal_but_piped_stdin_refuses_tty_and_defaults_to_none() {
    require_root!();
    let env = Env::new("runttypipe");
    env.write("compose.yaml", COMPOSE);
    // Not on a terminal: no tty by default, stdin passed through.
    let out = util::output_with_stdin(
        Command::new(util::BERTH)
            .args(["run", "--rm", "box", "sh", "-c", "tty; cat"])
            .current_dir(&env.dir)
            .env("BERTH_ROOT", env.root())
            .env("BERTH_SUBNET_POOL", &env.pool),
        b"piped\n",
    );
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    assert_eq!(util::text(&out.stdout), "not a tty\npiped\n");
    // -t with stdin that is no terminal: docker compose's refusal.
    let out = util::output_with_stdin(
        Command::new(util::BERTH)
            .args(["run", "-t", "--rm", "box", "true"])
            .current_dir(&env.dir)
            .env("BERTH_ROOT", env.root())
            .env("BERTH_SUBNET_POOL", &env.pool),
        b"",
    );
    assert!(!out.status.success());
    assert!(
        util::text(&out.stderr).contains("the input device is not a TTY"),
        "{}",
        util::text(&out.stderr)
    );
    // Detached, stdin stays open with nobody attached (`-i`, docker compose's default), so
    // `cat` keeps running; `-i=false` gives it end of file at once.
    let open = env.ok(&["run", "-d", "box", "cat"]);
    let closed = env.ok(&["run", "-d", "-i=false", "box", "cat"]);
    std::thread::sleep(Duration::from_millis(500));
    let running = env.ok(&["ps", "--format", "json"]);
    assert!(running.contains(open.trim()), "{running}");
    assert!(!running.contains(closed.trim()), "{running}");
    let err = env.fails(&["run", "-t", "-T", "box", "true"]);
    assert!(err.contains("can't be used together"), "{err}");
}

#[test]
fn signals_to_a_foreground_run_reach_the_container() {
    require_root!();
    let env = Env::new("runsig");
    env.write("compose.yaml", COMPOSE);
    let mut child = Command::new(util::BERTH)
        .args([
            "run",
            "--rm",
            "box",
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .current_dir(&env.dir)
        .env("BERTH_ROOT", env.root())
        .env("BERTH_SUBNET_POOL", &env.pool)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = out.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "berth ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    // berth is the test's own child.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    out.read_to_end(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert!(
        String::from_utf8_lossy(&seen).contains("got-term"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    assert_eq!(status.code(), Some(7));
}

#[test]
fn exec_and_run_with_stdout_redirected_get_no_terminal() {
    require_root!();
    let env = Env::new("ttyredir");
    env.write("compose.yaml", COMPOSE);
    env.ok(&["up", "-d"]);
    // stdin is a terminal, stdout a pipe (`berth exec box cat f > file` from a shell).
    let pty = nix::pty::openpty(None, None).unwrap();
    for args in [
        vec!["exec", "box", "sh", "-c", "tty; printf 'a\\nb\\n'"],
        vec!["run", "--rm", "box", "sh", "-c", "tty; printf 'a\\nb\\n'"],
    ] {
        let out = Command::new(util::BERTH)
            .args(&args)
            .current_dir(&env.dir)
            .env("BERTH_ROOT", env.root())
            .env("BERTH_SUBNET_POOL", &env.pool)
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            util::text(&out.stderr)
        );
        assert_eq!(util::text(&out.stdout), "not a tty\na\nb\n", "{args:?}");
    }
}
