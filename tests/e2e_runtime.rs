//! The container runtime's process features, end to end (root only): `init` as process 1,
//! pid and ipc namespaces shared between containers, `exec` and `run` with a terminal and
//! stdin, and `cp` ownership.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::time::{Duration, Instant};
use util::Env;

/// Zombie processes in the service's container, as `pid:name` lines.
fn zombies(env: &Env, service: &str) -> String {
    env.ok(&[
        "exec",
        "-T",
        service,
        "sh",
        "-c",
        "for s in /proc/[0-9]*/status; do grep -q '^State:.*Z' $s && grep '^Name' $s; done; true",
    ])
}

#[test]
fn init_reaps_orphans_forwards_signals_and_keeps_the_exit_code() {
    require_root!();
    let env = Env::new("rtinit");
    // An orphan (the inner sleep) is reparented to process 1 and exits after 0.2 s; then the
    // main process becomes a sleep, which never waits for anything.
    let script = "sh -c 'sleep 0.2 &'; exec sleep 1000";
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  with:\n    image: busybox\n    init: true\n    command: [sh, -c, \"{script}\"]\n  without:\n    image: busybox\n    command: [sh, -c, \"{script}\"]\n"
        ),
    );
    env.ok(&["up", "-d"]);
    std::thread::sleep(Duration::from_millis(800));
    let pid1 = env.ok(&["exec", "-T", "with", "cat", "/proc/1/cmdline"]);
    assert!(
        pid1.starts_with("/sbin/docker-init\0--\0sh\0"),
        "process 1 is {pid1:?}"
    );
    assert_eq!(zombies(&env, "with"), "", "init left a zombie");
    // The control: without an init the orphan stays a zombie.
    assert!(zombies(&env, "without").contains("sleep"));

    // SIGTERM reaches the sleep (which as process 1 would ignore it), and its death by the
    // signal is the container's exit code.
    let t = Instant::now();
    env.ok(&["stop", "-t", "20", "with"]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop waited for the kill"
    );
    let v = env.wait_ps("with", "exited", |v| v["State"] == "exited");
    assert_eq!(v["ExitCode"], 143, "{v}");

    // `run --init` and the command's own exit code.
    let out = env.berth(&[
        "run",
        "--rm",
        "--init",
        "without",
        "sh",
        "-c",
        "cat /proc/1/cmdline; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", util::text(&out.stderr));
    assert!(util::text(&out.stdout).starts_with("/sbin/docker-init"));
    // A command that does not exist: 127, with the reason.
    let out = env.berth(&["run", "--rm", "--init", "without", "/no/such"]);
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn pid_and_ipc_namespaces_are_shared_with_another_service() {
    require_root!();
    let env = Env::new("rtns");
    // `a` keeps a syslog ring buffer in a SysV shared memory segment (`syslogd -C`).
    env.write(
        "compose.yaml",
        r#"services:
  a:
    image: busybox
    command: [sh, -c, "syslogd -n -C16 & sleep 0.3; logger hello-from-a; exec sleep 1000"]
  b:
    image: busybox
    pid: service:a
    ipc: service:a
    command: [sleep, "1001"]
  alone:
    image: busybox
    ipc: shareable
    command: [sleep, "1002"]
"#,
    );
    env.ok(&["up", "-d"]);
    std::thread::sleep(Duration::from_millis(600));
    let ps = env.ok(&["exec", "-T", "b", "ps", "-o", "args"]);
    assert!(
        ps.contains("sleep 1000") && ps.contains("sleep 1001"),
        "{ps}"
    );
    let ps = env.ok(&["exec", "-T", "a", "ps", "-o", "args"]);
    assert!(ps.contains("sleep 1001"), "a does not see b: {ps}");
    let ps = env.ok(&["exec", "-T", "alone", "ps", "-o", "args"]);
    assert!(!ps.contains("sleep 1000"), "{ps}");

    let segments = |svc: &str| {
        env.ok(&["exec", "-T", svc, "cat", "/proc/sysvipc/shm"])
            .lines()
            .count()
            - 1
    };
    assert_eq!(segments("a"), 1);
    assert_eq!(segments("b"), 1, "b does not see a's segment");
    assert_eq!(segments("alone"), 0);
    let log = env.ok(&["exec", "-T", "b", "logread"]);
    assert!(log.contains("hello-from-a"), "{log}");

    let inspect = env.ok(&["inspect", "b"]);
    assert!(inspect.contains("\"PidMode\": \"service:a\""), "{inspect}");
}

/// Host pids whose command line has `arg` as an argument (a unique number this test chose).
fn processes_with_arg(arg: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn what_outlives_a_stopped_containers_init_goes_with_its_cgroup() {
    require_root!();
    let env = Env::new("rtcgrm");
    // With the host's pid namespace, the background sleep outlives the shell, as it would in
    // a container that shares another's: the cgroup still holds it when the init is reaped.
    let mark = format!("3{}", std::process::id());
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  a:\n    image: busybox\n    pid: host\n    command: [sh, -c, \"sleep {mark} & sleep 0.3; exit 3\"]\n"
        ),
    );
    env.ok(&["up", "-d"]);
    let v = env.wait_ps("a", "exited", |v| v["State"] == "exited");
    assert_eq!(v["ExitCode"], 3, "{v}");
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "a"])).unwrap();
    let id = inspect[0]["Id"].as_str().unwrap().to_string();
    let left = processes_with_arg(&mark);
    for pid in &left {
        // Started by this test, through the container: ours to end if the runtime did not.
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert!(
        left.is_empty(),
        "the container's sleep outlived it: {left:?}"
    );
    // No hierarchy keeps the container's cgroup.
    let mut kept = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for parent in std::fs::read_dir(h.path()).into_iter().flatten().flatten() {
            if parent.file_name().to_string_lossy().starts_with("berth") {
                let dir = parent.path().join(&id);
                if dir.exists() {
                    kept.push(dir);
                }
            }
        }
    }
    assert!(kept.is_empty(), "cgroups left: {kept:?}");
    let links = [util::bridges(env.root()), util::veths(env.root())].concat();
    env.ok(&["down"]);
    assert_eq!(util::leftovers(env.root(), &links), Vec::<String>::new());
}

#[test]
fn joining_a_namespace_of_an_undefined_service_fails_before_anything_is_created() {
    require_root!();
    let env = Env::new("rtnsbad");
    env.write(
        "compose.yaml",
        "services:\n  b:\n    image: busybox\n    pid: service:nope\n    command: [sleep, \"1\"]\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(err.contains("undefined service \"nope\""), "{err}");
    let containers = env.root().join("containers");
    assert!(std::fs::read_dir(containers).map_or(true, |mut d| d.next().is_none()));
}

/// Runs `berth ARGS` on a new terminal (`script`), with `stty` applied to that terminal first;
/// returns the exit code and what the terminal showed.
fn on_terminal(env: &Env, stty: &str, args: &str) -> (Option<i32>, String) {
    let out = std::process::Command::new("script")
        .args([
            "-eqc",
            &format!("stty {stty}; {} {args}", util::BERTH),
            "/dev/null",
        ])
        .current_dir(&env.dir)
        .env("BERTH_ROOT", env.root())
        .env("BERTH_SUBNET_POOL", &env.pool)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), util::text(&out.stdout))
}

#[test]
fn exec_allocates_a_terminal_on_a_terminal_and_passes_stdin() {
    require_root!();
    if std::process::Command::new("script")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no script(1) (apt-get install bsdutils)");
        return;
    }
    let env = Env::new("rttty");
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    command: [sleep, \"1000\"]\n",
    );
    env.ok(&["up", "-d"]);
    let (code, out) = on_terminal(
        &env,
        "cols 77 rows 11",
        // The size is set once the process runs (as docker's resize after start): a moment.
        "exec web sh -c 'tty; sleep 0.3; stty size; exit 5'",
    );
    assert_eq!(code, Some(5), "{out}");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(
        out.contains("11 77"),
        "the terminal size did not follow: {out}"
    );
    // -T: no terminal even on one.
    let (_, out) = on_terminal(&env, "sane", "exec -T web tty");
    assert!(out.contains("not a tty"), "{out}");

    // Without a terminal stdin is passed through.
    let mut child = std::process::Command::new(util::BERTH)
        .args(["exec", "-T", "web", "cat"])
        .current_dir(&env.dir)
        .env("BERTH_ROOT", env.root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(util::text(&out.stdout), "through stdin\n");
}

#[test]
fn exec_processes_get_the_containers_seccomp_filter() {
    require_root!();
    let env = Env::new("rtexecsec");
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    command: [sleep, \"1000\"]\n  free:\n    image: busybox\n    security_opt: [seccomp=unconfined]\n    command: [sleep, \"1000\"]\n",
    );
    env.ok(&["up", "-d"]);
    let mode = |svc: &str| {
        let s = env.ok(&["exec", "-T", svc, "grep", "^Seccomp:", "/proc/self/status"]);
        s.split_whitespace().last().unwrap_or_default().to_string()
    };
    assert_eq!(
        mode("web"),
        "2",
        "an exec'd process runs without the filter"
    );
    assert_eq!(mode("free"), "0");
    // A syscall the default profile denies (unshare needs CAP_SYS_ADMIN there) fails.
    let out = env.berth(&["exec", "-T", "web", "unshare", "-m", "true"]);
    assert!(!out.status.success());

    // --privileged: every capability, for that process only.
    let caps = |args: &[&str]| {
        let mut a = vec!["exec", "-T"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["web", "grep", "^CapEff:", "/proc/self/status"]);
        let s = env.ok(&a);
        u64::from_str_radix(s.split_whitespace().last().unwrap_or_default(), 16).unwrap()
    };
    let plain = caps(&[]);
    let privileged = caps(&["--privileged"]);
    assert_eq!(plain.count_ones(), 14, "{plain:x}");
    assert!(
        privileged.count_ones() > 30 && privileged & plain == plain,
        "{privileged:x}"
    );
    let (_, out) = on_terminal(
        &env,
        "sane",
        "exec --privileged web grep ^CapEff: /proc/self/status",
    );
    assert!(out.contains(&format!("{privileged:016x}")), "{out}");
}

#[test]
fn cp_sets_owners_like_docker_cp_and_follows_links_with_l() {
    require_root!();
    use std::os::unix::fs::MetadataExt;
    let env = Env::new("rtcp");
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    command: [sh, -c, \"echo data > /tmp/data; chown 1000:1000 /tmp/data; ln -s /tmp/data /tmp/link; exec sleep 1000\"]\n",
    );
    env.ok(&["up", "-d"]);
    std::thread::sleep(Duration::from_millis(300));
    let owner = |path: &str| env.ok(&["exec", "-T", "web", "stat", "-c", "%u:%g", path]);

    // Into the container: root's, unless -a keeps the source's.
    let f = env.dir.join("f");
    std::fs::write(&f, "host").unwrap();
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
    env.ok(&["cp", "f", "web:/tmp/plain"]);
    assert_eq!(owner("/tmp/plain").trim(), "0:0");
    env.ok(&["cp", "-a", "f", "web:/tmp/archived"]);
    assert_eq!(owner("/tmp/archived").trim(), "1234:5678");

    // Out of the container: the caller's, unless -a.
    env.ok(&["cp", "web:/tmp/data", "out-plain"]);
    let m = std::fs::metadata(env.dir.join("out-plain")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw()
        )
    );
    env.ok(&["cp", "-a", "web:/tmp/data", "out-archived"]);
    let m = std::fs::metadata(env.dir.join("out-archived")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000));

    // A symlink is copied as one, or followed with -L.
    env.ok(&["cp", "web:/tmp/link", "out-link"]);
    let m = std::fs::symlink_metadata(env.dir.join("out-link")).unwrap();
    assert!(m.file_type().is_symlink());
    env.ok(&["cp", "-L", "web:/tmp/link", "out-followed"]);
    assert_eq!(
        std::fs::read_to_string(env.dir.join("out-followed")).unwrap(),
        "data\n"
    );
}

#[test]
fn run_passes_piped_stdin_to_the_container() {
    require_root!();
    let env = Env::new("rtrunin");
    env.write("compose.yaml", "services:\n  app:\n    image: busybox\n");
    let mut child = std::process::Command::new(util::BERTH)
        .args(["run", "--rm", "-T", "app", "sh", "-c", "tr a-z A-Z; exit 3"])
        .current_dir(&env.dir)
        .env("BERTH_ROOT", env.root())
        .env("BERTH_SUBNET_POOL", &env.pool)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped in\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(util::text(&out.stdout), "PIPED IN\n");
    assert_eq!(out.status.code(), Some(3));
    // Detached: nobody is attached; stdin stays open (`-i`, the default; see e2e_run_tty.rs).
    let out = env.ok(&["run", "-d", "app", "cat"]);
    assert!(!out.trim().is_empty());
}

#[test]
fn tty_true_gives_the_container_a_terminal_whose_output_is_logged() {
    require_root!();
    let env = Env::new("rttty2");
    env.write(
        "compose.yaml",
        "services:\n  t:\n    image: busybox\n    tty: true\n    command: [sh, -c, \"tty; test -t 1 && echo stdout-is-a-tty; exit 4\"]\n  p:\n    image: busybox\n    command: [sh, -c, \"tty; true\"]\n",
    );
    let out = util::output_of(&env, "t");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("stdout-is-a-tty"), "{out}");
    let v = env.wait_ps("t", "exited", |v| v["State"] == "exited");
    assert_eq!(v["ExitCode"], 4, "{v}");
    let out = env.ok(&["logs", "-f", "p"]);
    assert!(out.contains("not a tty"), "{out}");
}

#[test]
fn stdin_open_keeps_stdin_open_and_tty_keeps_a_shell_alive() {
    require_root!();
    let env = Env::new("rtstdin");
    env.write(
        "compose.yaml",
        "services:\n  open:\n    image: busybox\n    stdin_open: true\n    command: [cat]\n  shell:\n    image: busybox\n    tty: true\n    command: [sh]\n  closed:\n    image: busybox\n    command: [cat]\n",
    );
    env.ok(&["up", "-d"]);
    env.wait_ps("closed", "exited", |v| v["State"] == "exited");
    std::thread::sleep(Duration::from_millis(500));
    for svc in ["open", "shell"] {
        let v = env.wait_ps(svc, "listed", |_| true);
        assert_eq!(v["State"], "running", "{v}");
    }
}

/// Runs `berth args` in `env` with a umask of 077.
fn with_umask_077(env: &Env, args: &[&str]) {
    let cmd = env.command(args);
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c")
        .arg("umask 077; exec \"$0\" \"$@\"")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(cmd.get_current_dir().unwrap());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let out = sh.output().unwrap();
    assert!(
        out.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Docker's init layer: the mount points every container has are there from the start, in a
/// layer of their own; nothing is made in the container's own layer, so `commit` of a
/// container that changed nothing adds an empty layer.
#[test]
fn mount_points_come_from_an_init_layer_like_dockers() {
    require_root!();
    let env = Env::new("rtinitlayer");
    env.write(
        "compose.yaml",
        "services:\n  bb:\n    image: busybox\n    command: [sleep, '1000']\n",
    );
    env.ok(&["up", "-d"]);
    let seen = env.ok(&["exec", "-T", "bb", "readlink", "/etc/mtab"]);
    assert_eq!(seen, "/proc/mounts\n");
    let containers = env.root().join("containers");
    for c in std::fs::read_dir(&containers).unwrap() {
        let upper = c.unwrap().path().join("upper");
        let made: Vec<_> = std::fs::read_dir(&upper).unwrap().collect();
        assert!(made.is_empty(), "{} has {made:?}", upper.display());
    }
}

/// What a container sees has Docker's modes whatever the umask of whoever runs berth: at 077
/// the container's `/` was 0700 and its `/etc/hosts` 0600, so no user but root could read
/// anything; a new named volume and a bind source berth makes are 0755 as Docker's.
#[test]
fn the_callers_umask_does_not_reach_into_containers() {
    require_root!();
    let env = Env::new("rtumask");
    env.write(
        "compose.yaml",
        "services:\n  bb:\n    image: busybox\n    user: '1000'\n    command: [sleep, '1000']\n    volumes: [data:/data, ./made/deep:/bind]\nvolumes:\n  data:\n",
    );
    with_umask_077(&env, &["up", "-d"]);
    let seen = env.ok(&[
        "exec",
        "-T",
        "bb",
        "sh",
        "-c",
        "stat -c '%n %a' / /etc /etc/hosts /etc/resolv.conf /etc/hostname /data /bind; ls / | grep -c ^s*bin$; head -1 /etc/passwd",
    ]);
    assert_eq!(
        seen,
        "/ 755\n/etc 755\n/etc/hosts 644\n/etc/resolv.conf 644\n/etc/hostname 644\n/data 755\n/bind 755\n2\nroot:x:0:0:root:/root:/bin/sh\n",
        "{seen}"
    );
    for d in ["made", "made/deep"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.dir.join(d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "{d}");
    }
}
