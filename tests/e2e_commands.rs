//! Lifecycle commands end to end (root only): stop/start/restart/kill/rm, pause/unpause, top,
//! cp, inspect, and durability after the CLI exits and after a `kill -9` of a shim.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::time::{Duration, Instant};
use util::Env;

const SERVICE: &str = "services:\n  app:\n    image: busybox\n    restart: always\n    command: [sh, -c, 'trap \"exit 0\" TERM; trap \"echo usr2\" USR2; echo started; while true; do sleep 1 & wait $$!; done']\n";

fn inspect(env: &Env) -> serde_json::Value {
    let out = env.ok(&["inspect", "app"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

fn wait_for(env: &Env, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = inspect(env);
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never {what}: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(v: &serde_json::Value) -> &str {
    v["State"]["Status"].as_str().unwrap_or_default()
}

#[test]
fn stop_start_restart_kill_pause_top_inspect_rm() {
    require_root!();
    let env = Env::new("cmds");
    env.write("compose.yaml", SERVICE);
    env.ok(&["up", "-d"]);
    let v = wait_for(&env, "running", |v| status(v) == "running");
    assert_eq!(v["Name"], "/cmds-app-1");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "always");
    assert_eq!(v["Config"]["Image"], "busybox");
    assert!(v["State"]["Pid"].as_i64().unwrap() > 0);

    // `stop` is never undone by `restart: always`.
    env.ok(&["stop", "-t", "5"]);
    std::thread::sleep(Duration::from_millis(800));
    let v = inspect(&env);
    assert_eq!(status(&v), "exited", "{v:#}");
    assert_eq!(v["State"]["ExitCode"], 0);

    env.ok(&["start"]);
    let first = wait_for(&env, "started again", |v| status(v) == "running");
    env.ok(&["restart", "-t", "5", "app"]);
    let v = wait_for(&env, "restarted", |v| status(v) == "running");
    assert_ne!(v["State"]["Pid"], first["State"]["Pid"]);
    assert_eq!(
        env.ok(&["logs", "--no-log-prefix"]),
        "started\nstarted\nstarted\n"
    );

    // pause freezes every process: `top` still lists them, their state is D/T (frozen).
    env.ok(&["pause"]);
    let v = inspect(&env);
    assert_eq!(status(&v), "paused");
    assert_eq!(v["State"]["Paused"], true);
    let top = env.ok(&["top"]);
    assert!(top.starts_with("cmds-app-1\nUID"), "{top}");
    assert!(top.contains("sleep 1"), "{top}");
    env.ok(&["unpause"]);
    assert_eq!(status(&inspect(&env)), "running");

    // kill -s delivers the signal (the container traps it); SIGKILL stops it for good.
    env.ok(&["kill", "-s", "SIGUSR2", "app"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !env.ok(&["logs", "--no-log-prefix"]).ends_with("usr2\n") {
        assert!(Instant::now() < deadline, "USR2 never arrived");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(&inspect(&env)), "running");
    env.ok(&["kill"]);
    let v = wait_for(&env, "killed", |v| status(v) == "exited");
    assert_eq!(v["State"]["ExitCode"], 137);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(&inspect(&env)), "exited", "SIGKILL was undone");

    assert!(
        env.fails(&["stop", "nope"])
            .contains("no such service: nope")
    );
    env.ok(&["rm", "-f"]);
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    assert!(
        util::leftovers(env.root(), &[])
            .iter()
            .all(|l| !l.starts_with("containers/"))
    );
    env.ok(&["down"]);
}

#[test]
fn cp_both_ways_keeps_owners_and_stays_in_the_container() {
    require_root!();
    let env = Env::new("cpy");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sh, -c, 'ln -s / /escape; ln -s /etc/passwd /pw; mkdir -p /d/sub; echo deep > /d/sub/f; chown 123:456 /d/sub/f; touch /ready; sleep 1000']\n",
    );
    env.ok(&["up", "-d"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .berth(&["exec", "app", "test", "-e", "/ready"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    let host = tempfile::tempdir().unwrap();
    let h = |p: &str| host.path().join(p).to_str().unwrap().to_string();

    // Out, with -a: owners kept; a directory lands under the destination dir.
    env.ok(&["cp", "-a", "app:/d", &h("")]);
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(host.path().join("d/sub/f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (123, 456));
    assert_eq!(
        std::fs::read_to_string(host.path().join("d/sub/f")).unwrap(),
        "deep\n"
    );
    // Without -a the copy belongs to the caller.
    env.ok(&["cp", "app:/d/sub/f", &h("plain")]);
    assert_eq!(std::fs::metadata(h("plain")).unwrap().uid(), 0);

    // In, with -a: owners kept.
    std::fs::write(h("up"), "to the container").unwrap();
    nix::unistd::chown(
        host.path().join("up").as_path(),
        Some(7.into()),
        Some(8.into()),
    )
    .unwrap();
    env.ok(&["cp", "-a", &h("up"), "app:/tmp/"]);
    assert_eq!(
        env.ok(&["exec", "app", "stat", "-c", "%u:%g %s", "/tmp/up"]),
        "7:8 16\n"
    );

    // Symlinks lead nowhere outside: /escape/... is the container's own /, and a symlink
    // copied out stays a symlink.
    let sentinel = host.path().join("sentinel");
    std::fs::write(&sentinel, "host").unwrap();
    // (The host path does not exist in the container, so this fails rather than write it.)
    env.fails(&[
        "cp",
        &h("up"),
        &format!("app:/escape{}", sentinel.display()),
    ]);
    assert_eq!(std::fs::read_to_string(&sentinel).unwrap(), "host");
    env.ok(&["cp", "app:/pw", &h("pw")]);
    assert!(
        std::fs::symlink_metadata(h("pw"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    env.ok(&["cp", "app:/escape/etc/hostname", &h("hn")]);
    assert_eq!(
        std::fs::read_to_string(h("hn")).unwrap(),
        env.ok(&["exec", "app", "cat", "/etc/hostname"])
    );
    assert!(env.fails(&["cp", "app:/nope", &h("x")]).contains("nope"));

    // A stopped container's files are still there.
    env.ok(&["stop", "-t", "0"]);
    env.ok(&["cp", "app:/tmp/up", &h("after-stop")]);
    assert_eq!(
        std::fs::read_to_string(h("after-stop")).unwrap(),
        "to the container"
    );
    env.ok(&["down"]);
}

/// The shim of the `app` service's container.
fn shim_pid(env: &Env) -> i32 {
    let dir = std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| {
            std::fs::read_to_string(d.join("container.json")).is_ok_and(|c| c.contains("-app-1\""))
        })
        .unwrap();
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    st["shim_pid"].as_i64().unwrap() as i32
}

#[test]
fn a_killed_shim_leaves_a_container_that_stop_and_down_still_handle() {
    require_root!();
    let env = Env::new("dur");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1 & wait $$!; done']\n  short:\n    image: busybox\n    command: [sh, -c, 'read x']\n",
    );
    // The CLI has exited: the containers run on under their shims.
    env.ok(&["up", "-d"]);
    wait_for(&env, "running", |v| status(v) == "running");
    let shim = shim_pid(&env);
    let start = std::fs::read_to_string(format!("/proc/{shim}/cmdline")).unwrap();
    assert!(
        start.contains("__shim") && start.contains(env.root().to_str().unwrap()),
        "{start:?}"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim), nix::sys::signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The container keeps running without its shim, and exec still works.
    let v = inspect(&env);
    assert_eq!(status(&v), "running", "{v:#}");
    assert_eq!(env.ok(&["exec", "app", "echo", "hi"]), "hi\n");
    // stop ends it and cleans up what the shim would have; it reads exited.
    env.ok(&["stop", "-t", "5", "app"]);
    let v = inspect(&env);
    assert_eq!(status(&v), "exited", "{v:#}");
    // start brings it back under a new shim.
    env.ok(&["start", "app"]);
    wait_for(&env, "running again", |v| status(v) == "running");
    env.ok(&["down", "-t", "1"]);
    let left = util::leftovers(env.root(), &util::bridges(env.root()));
    assert!(left.is_empty(), "{left:?}");
}

/// CVE-2019-5736: the shim and `berth exec` run from a read-only mount of berth, so a
/// container process that reaches their `/proc/PID/exe` cannot open the binary for writing,
/// not even later through a kept `O_PATH` descriptor (while berth runs the kernel answers
/// ETXTBSY; once nothing runs it, the read-only mount still answers EROFS).
#[test]
fn shim_and_exec_binaries_cannot_be_opened_for_writing() {
    require_root!();
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let env = Env::new("seal");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sleep, '1000']\n",
    );
    env.ok(&["up", "-d"]);
    wait_for(&env, "running", |v| status(v) == "running");
    let read_only = |f: &std::fs::File| {
        nix::sys::statvfs::fstatvfs(f)
            .unwrap()
            .flags()
            .contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
    };
    let kept = |pid: i32| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(format!("/proc/{pid}/exe"))
            .unwrap()
    };
    let reopen = |f: &std::fs::File| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
            .unwrap_err()
            .raw_os_error()
    };
    let shim = kept(shim_pid(&env));
    assert!(read_only(&shim), "the shim runs from a writable mount");
    // `berth exec` waits for its process: look at its own exe while it does.
    let mut exec = std::process::Command::new(util::BERTH)
        .args(["exec", "-T", "app", "sleep", "2"])
        .current_dir(&env.dir)
        .env("BERTH_ROOT", env.root())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let cli = kept(exec.id() as i32);
    assert!(read_only(&cli), "berth exec runs from a writable mount");
    let _ = exec.wait();
    env.ok(&["down", "-t", "0"]);
    for f in [&shim, &cli] {
        let e = reopen(f);
        assert!(e == Some(libc::EROFS) || e == Some(libc::ETXTBSY), "{e:?}");
    }
    // The installed binary itself stays an ordinary writable file for the host's root.
    let bin = std::fs::File::open(util::BERTH).unwrap();
    assert!(!read_only(&bin));
}
