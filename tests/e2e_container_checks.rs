//! Container keys of issue 4 that had no end-to-end check: `extra_hosts` with `host-gateway`,
//! `ulimits` above what berth itself may grant (capped at its hard limit, never failing), and
//! `restart: unless-stopped` (restarts until stopped, and a stop is never undone).
mod util;
use std::time::{Duration, Instant};
use util::Env;

#[test]
fn host_gateway_ulimits_above_the_hard_limit_and_unless_stopped() {
    require_root!();
    let env = Env::new("ctrcheck");
    env.write(
        "compose.yaml",
        r#"services:
  box:
    image: busybox
    command: [sleep, "1000"]
    extra_hosts: ["gw.test:host-gateway"]
    ulimits:
      nofile: 1073741816
      nproc: {soft: 77, hard: 99}
  flaky:
    image: busybox
    command: [sh, -c, "echo attempt; exit 3"]
    restart: unless-stopped
"#,
    );
    env.ok(&["up", "-d"]);
    let sh = |cmd: &str| env.ok(&["exec", "-T", "box", "sh", "-c", cmd]);

    // host-gateway is the gateway of the container's network.
    let hosts = sh("cat /etc/hosts");
    let route = sh("ip route | awk '/^default/ {print $3}'");
    let gateway = route.trim();
    assert!(!gateway.is_empty(), "no default route");
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with(gateway) && l.contains("gw.test")),
        "gw.test is not {gateway}:\n{hosts}"
    );

    // Asked for more open files than berth may grant: berth's own hard limit, both soft and
    // hard; a value below it is kept as given.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let want = hard.min(1073741816);
    assert_eq!(sh("ulimit -Sn; ulimit -Hn"), format!("{want}\n{want}\n"));
    assert_eq!(sh("ulimit -Su; ulimit -Hu"), "77\n99\n");

    // unless-stopped: restarted after each failure...
    let deadline = Instant::now() + Duration::from_secs(15);
    while env.ok(&["logs", "flaky"]).matches("attempt").count() < 3 {
        assert!(Instant::now() < deadline, "flaky was not restarted");
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...until stopped, and then never again.
    env.ok(&["stop", "-t", "0", "flaky"]);
    let after = env.ok(&["logs", "flaky"]).matches("attempt").count();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(env.ok(&["logs", "flaky"]).matches("attempt").count(), after);
    env.wait_ps("flaky", "exited", |v| v["State"] == "exited");
}

#[test]
fn the_images_healthcheck_is_honoured_and_the_service_overrides_it() {
    require_root!();
    let env = Env::new("ctrhealth");
    let build = r#"
    pull_policy: build
    build:
      dockerfile_inline: |
        FROM busybox
        HEALTHCHECK --interval=1s --start-period=0s CMD ["sh", "-c", "test -f /tmp/ok"]
    command: [sh, -c, "touch /tmp/ok; exec sleep 1000"]
"#;
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  fromimage:\n    image: ctr-hc:1{build}  overridden:\n    image: ctr-hc:2{build}    healthcheck:\n      test: [CMD, \"false\"]\n      interval: 1s\n      retries: 1\n  disabled:\n    image: ctr-hc:3{build}    healthcheck:\n      disable: true\n"
        ),
    );
    env.ok(&["up", "-d"]);
    env.wait_ps("fromimage", "healthy", |v| v["Health"] == "healthy");
    env.wait_ps("overridden", "unhealthy", |v| v["Health"] == "unhealthy");
    let v = env.wait_ps("disabled", "running", |v| v["State"] == "running");
    assert_eq!(v["Health"], "", "{v}");
}

#[test]
fn exec_index_detach_and_user_groups() {
    require_root!();
    let env = Env::new("ctrexec");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    user: www-data\n    scale: 2\n    command: [sleep, \"1000\"]\n",
    );
    env.ok(&["up", "-d"]);
    let host = |i: &str| env.ok(&["exec", "-T", "--index", i, "app", "hostname"]);
    let (one, two) = (host("1"), host("2"));
    assert_ne!(one, two);
    let err = env.fails(&["exec", "-T", "--index", "3", "app", "true"]);
    assert!(err.contains("is not running container #3"), "{err}");

    // -d returns at once; the command runs on.
    let started = Instant::now();
    env.ok(&[
        "exec",
        "-d",
        "app",
        "sh",
        "-c",
        "sleep 0.5; touch /tmp/done",
    ]);
    assert!(started.elapsed() < Duration::from_millis(450), "-d waited");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .berth(&["exec", "-T", "app", "test", "-f", "/tmp/done"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the detached command did not run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // -u: that user with its own groups (root is in wheel), not the container's user's.
    assert_eq!(env.ok(&["exec", "-T", "app", "id", "-u"]), "33\n");
    assert_eq!(
        env.ok(&["exec", "-T", "-u", "root", "app", "id", "-G"]),
        "0 10\n"
    );
    // The exec'd process has the container's limits, not a default 1024 open files.
    let limits = |args: &[&str]| {
        let mut a = vec!["exec", "-T"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["app", "cat", "/proc/1/limits", "/proc/self/limits"]);
        let out = env.ok(&a);
        out.lines()
            .filter(|l| l.starts_with("Max open files"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let l = limits(&[]);
    assert_eq!(l[0], l[1], "{l:?}");
}

#[test]
fn systempaths_unconfined_unmasks_proc() {
    require_root!();
    let env = Env::new("ctrsyspaths");
    env.write(
        "compose.yaml",
        "services:\n  open:\n    image: busybox\n    security_opt: [systempaths=unconfined]\n    command: [sleep, \"1000\"]\n  masked:\n    image: busybox\n    command: [sleep, \"1000\"]\n",
    );
    env.ok(&["up", "-d"]);
    // /proc/timer_list is masked (a bind of /dev/null) unless unconfined.
    let timers = |svc: &str| env.ok(&["exec", "-T", svc, "sh", "-c", "wc -c < /proc/timer_list"]);
    assert_eq!(timers("masked").trim(), "0");
    assert_ne!(timers("open").trim(), "0");
    let ro = |svc: &str| {
        env.ok(&[
            "exec",
            "-T",
            svc,
            "grep",
            "-c",
            " /proc/sys ",
            "/proc/self/mountinfo",
        ])
    };
    assert_eq!(ro("masked"), "1\n");
    let out = env.berth(&[
        "exec",
        "-T",
        "open",
        "grep",
        "-c",
        " /proc/sys ",
        "/proc/self/mountinfo",
    ]);
    assert_eq!(util::text(&out.stdout), "0\n");
}

#[test]
fn exec_as_another_user_gets_the_services_group_add() {
    require_root!();
    let env = Env::new("ctrgroups");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    user: www-data\n    group_add: [staff, \"7\"]\n    command: [sleep, \"1000\"]\n",
    );
    env.ok(&["up", "-d"]);
    let groups = |args: &[&str]| {
        let mut a = vec!["exec", "-T"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["app", "id", "-G"]);
        let mut g: Vec<u32> = env
            .ok(&a)
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        g.sort();
        g.dedup();
        g
    };
    // The container's own user: its groups and group_add.
    assert_eq!(groups(&[]), [7, 33, 50]);
    // Another user (as Docker): that user's groups (root is in wheel), then group_add.
    assert_eq!(groups(&["-u", "root"]), [0, 7, 10, 50]);
    // A uid the image does not know: its gid and group_add.
    assert_eq!(groups(&["-u", "4321:4321"]), [7, 50, 4321]);
}
