//! Supervision and project lifecycle, end to end (root only): exec, depends_on conditions,
//! healthchecks, restart policies, `up --wait`, stop signals.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::time::{Duration, Instant};
use util::Env;

#[test]
fn exec_runs_in_the_container_and_propagates_exit_codes() {
    require_root!();
    let env = Env::new("ex");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sh, -c, 'trap \"exit 0\" TERM; echo data > /tmp/f; while true; do sleep 1 & wait $$!; done']\n",
    );
    env.ok(&["up", "-d"]);
    env.wait_ps("app", "running", |v| v["State"] == "running");
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.berth(&["exec", "-T", "app", "cat", "/tmp/f"]).stdout != b"data\n" {
        assert!(Instant::now() < deadline, "exec never read the file");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = env.berth(&["exec", "app", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = env.ok(&[
        "exec",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        "-e",
        "X=1",
        "app",
        "sh",
        "-c",
        "id -u; pwd; echo $X",
    ]);
    assert_eq!(out, "65534\n/tmp\n1\n");
    let out = env.berth(&["exec", "app", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    // `exec` sees the container's pid namespace, not the host's.
    let ps = env.ok(&["exec", "app", "ps", "-o", "pid,comm"]);
    assert!(ps.lines().any(|l| l.trim_start().starts_with("1 ")), "{ps}");
    assert!(ps.lines().count() < 10, "{ps}");
    env.ok(&["down", "-t", "1"]);
}

#[test]
fn dependencies_wait_for_health_and_completion() {
    require_root!();
    let env = Env::new("deps");
    env.write(
        "compose.yaml",
        r#"services:
  db:
    image: busybox
    command: [sh, -c, 'trap "exit 0" TERM; sleep 1; touch /tmp/ready; while true; do sleep 1 & wait $$!; done']
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 200ms
      retries: 50
  migrate:
    image: busybox
    command: [sh, -c, 'echo migrated']
  app:
    image: busybox
    command: [sh, -c, 'trap "exit 0" TERM; echo started; while true; do sleep 1 & wait $$!; done']
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
"#,
    );
    let out = env.berth(&["up", "-d", "--wait"]);
    let err = util::text(&out.stderr);
    assert!(out.status.success(), "{err}");
    // app started only after db was healthy and migrate had exited 0.
    let healthy = err.find("deps-db-1  Healthy").expect(&err);
    let exited = err.find("deps-migrate-1  Exited").expect(&err);
    let app = err.find("deps-app-1  Starting").expect(&err);
    assert!(healthy < app && exited < app, "{err}");
    let db = env.wait_ps("db", "healthy", |v| v["Health"] == "healthy");
    assert!(db["Status"].as_str().unwrap().contains("(healthy)"));
    let mig = env.wait_ps("migrate", "exited", |v| v["State"] == "exited");
    assert_eq!(mig["ExitCode"], 0);
    env.ok(&["down", "-t", "1"]);

    // A dependency that fails to complete stops its dependents from starting.
    env.write(
        "compose.yaml",
        "services:\n  migrate:\n    image: busybox\n    command: [sh, -c, 'exit 4']\n  app:\n    image: busybox\n    command: [sleep, '100']\n    depends_on:\n      migrate: {condition: service_completed_successfully}\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("didn't complete successfully: exit 4"),
        "{err}"
    );
    let ps = env.ok(&["ps", "-a"]);
    assert!(
        !ps.contains("deps-app-1   busybox   \"sleep 100\"   app   ") || !ps.contains("Up"),
        "{ps}"
    );
    env.ok(&["down", "-t", "0"]);
}

#[test]
fn unhealthy_dependency_fails_up() {
    require_root!();
    let env = Env::new("sick");
    env.write(
        "compose.yaml",
        "services:\n  db:\n    image: busybox\n    command: [sleep, '100']\n    healthcheck:\n      test: ['CMD-SHELL', 'echo failing; exit 1']\n      interval: 100ms\n      retries: 2\n  app:\n    image: busybox\n    command: [sleep, '100']\n    depends_on:\n      db: {condition: service_healthy}\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(err.contains("sick-db-1 is unhealthy"), "{err}");
    let db = env.wait_ps("db", "unhealthy", |v| v["Health"] == "unhealthy");
    assert_eq!(db["State"], "running");
    env.ok(&["down", "-t", "0"]);
}

#[test]
fn restart_policies_restart_and_stop_is_never_undone() {
    require_root!();
    let env = Env::new("rs");
    env.write(
        "compose.yaml",
        "services:\n  flaky:\n    image: busybox\n    command: [sh, -c, 'echo attempt; exit 3']\n    restart: on-failure:2\n  always:\n    image: busybox\n    command: [sh, -c, 'echo run; sleep 0.2']\n    restart: always\n  once:\n    image: busybox\n    command: [sh, -c, 'exit 0']\n    restart: on-failure\n",
    );
    env.ok(&["up", "-d"]);
    // on-failure:2 = the first run and two restarts (100 ms then 200 ms backoff).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = env.ok(&["logs", "flaky"]);
        let n = logs.matches("attempt").count();
        if n == 3 {
            break;
        }
        assert!(n < 3, "{logs}");
        assert!(Instant::now() < deadline, "only {n} attempts:\n{logs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(env.ok(&["logs", "flaky"]).matches("attempt").count(), 3);
    env.wait_ps("flaky", "exited", |v| {
        v["State"] == "exited" && v["ExitCode"] == 3
    });
    env.wait_ps("once", "exited", |v| {
        v["State"] == "exited" && v["ExitCode"] == 0
    });
    // `always` keeps coming back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.ok(&["logs", "always"]).matches("run").count() < 3 {
        assert!(Instant::now() < deadline, "always did not restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    // down stops it for good, and nothing is left.
    let links = [util::bridges(env.root()), util::veths(env.root())].concat();
    env.ok(&["down", "-t", "1"]);
    assert_eq!(util::leftovers(env.root(), &links), Vec::<String>::new());
}

#[test]
fn stop_signal_and_grace_period_are_honoured() {
    require_root!();
    let env = Env::new("sig");
    // The container only exits on SIGUSR1; with SIGTERM it would wait for the 20 s kill.
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sh, -c, 'trap \"exit 0\" USR1; while true; do sleep 1 & wait $$!; done']\n    stop_signal: SIGUSR1\n    stop_grace_period: 20s\n",
    );
    env.ok(&["up", "-d"]);
    env.wait_ps("app", "running", |v| v["State"] == "running");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    env.ok(&["down"]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        t.elapsed()
    );
}
