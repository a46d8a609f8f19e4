//! Project orchestration end to end (root only): scale, orphans, `up SERVICE`, the CI flags
//! of attached `up`, and `run`.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use util::Env;

fn names(env: &Env) -> Vec<String> {
    env.ok(&["ps", "-a", "--format", "json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["Name"].as_str().unwrap_or_default().to_string())
        .collect()
}

const LOOP: &str = r#"[sh, -c, 'trap "exit 0" TERM; while true; do sleep 1 & wait $$!; done']"#;

#[test]
fn scale_orphans_and_selected_services() {
    require_root!();
    let env = Env::new("sc");
    env.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: busybox\n    command: {LOOP}\n    deploy:\n      replicas: 2\n  db:\n    image: busybox\n    command: {LOOP}\n  extra:\n    image: busybox\n    command: {LOOP}\n    depends_on: [db]\n"),
    );
    // up SERVICE starts it and its dependencies only.
    env.ok(&["up", "-d", "extra"]);
    assert_eq!(names(&env), ["sc-db-1", "sc-extra-1"]);
    env.ok(&["up", "-d"]);
    assert_eq!(
        names(&env),
        ["sc-db-1", "sc-extra-1", "sc-web-1", "sc-web-2"]
    );
    // --scale overrides deploy.replicas; numbers are reused; scaling down drops the highest.
    env.ok(&["up", "-d", "--scale", "web=3"]);
    assert!(names(&env).contains(&"sc-web-3".to_string()));
    env.ok(&["up", "-d", "--scale", "web=1"]);
    let n = names(&env);
    assert!(
        n.contains(&"sc-web-1".to_string()) && !n.contains(&"sc-web-2".to_string()),
        "{n:?}"
    );
    // A service removed from the file leaves an orphan: warned about, removed on request.
    env.write(
        "compose.yaml",
        &format!("services:\n  db:\n    image: busybox\n    command: {LOOP}\n"),
    );
    let out = env.berth(&["up", "-d"]);
    assert!(
        util::text(&out.stderr).contains("orphan"),
        "{}",
        util::text(&out.stderr)
    );
    assert_eq!(names(&env).len(), 3);
    env.ok(&["up", "-d", "--remove-orphans"]);
    assert_eq!(names(&env), ["sc-db-1"]);
    // ls lists the project; ps filters by status and service.
    let ls: serde_json::Value = serde_json::from_str(&env.ok(&["ls", "--format", "json"])).unwrap();
    assert_eq!(ls[0]["Name"], "sc");
    assert_eq!(ls[0]["Status"], "running(1)");
    assert_eq!(
        env.ok(&["ps", "--status", "running", "-q"]).lines().count(),
        1
    );
    assert_eq!(
        env.ok(&["ps", "--status", "exited", "-q"]).lines().count(),
        0
    );
    assert_eq!(
        env.ok(&["ps", "--filter", "service=db", "-q"])
            .lines()
            .count(),
        1
    );
    // --dry-run changes nothing.
    env.ok(&["up", "-d", "--dry-run", "--scale", "db=3"]);
    assert_eq!(names(&env), ["sc-db-1"]);
    env.ok(&["down", "-t", "0"]);
}

#[test]
fn attached_up_ci_flags_and_exit_codes() {
    require_root!();
    let env = Env::new("ci");
    env.write(
        "compose.yaml",
        &format!("services:\n  server:\n    image: busybox\n    command: {LOOP}\n  tests:\n    image: busybox\n    command: [sh, -c, 'echo testing; sleep 0.3; exit 3']\n    depends_on: [server]\n"),
    );
    let out = env.berth(&["up", "--abort-on-container-exit"]);
    assert_eq!(out.status.code(), Some(3), "{}", util::text(&out.stderr));
    let stdout = util::text(&out.stdout);
    assert!(stdout.contains("tests-1   | testing"), "{stdout}");
    assert!(stdout.contains("tests-1 exited with code 3"), "{stdout}");
    // The abort stopped the server too.
    let ps = env.ok(&["ps"]);
    assert_eq!(ps.lines().count(), 1, "{ps}");
    // --exit-code-from: the code of that service (the server exits 0 on SIGTERM).
    let out = env.berth(&["up", "--exit-code-from", "server"]);
    assert_eq!(out.status.code(), Some(0), "{}", util::text(&out.stderr));
    let out = env.berth(&["up", "--exit-code-from", "tests"]);
    assert_eq!(out.status.code(), Some(3));
    // --abort-on-container-failure ignores clean exits.
    env.write(
        "compose.yaml",
        &format!("services:\n  ok:\n    image: busybox\n    command: ['true']\n  bad:\n    image: busybox\n    command: [sh, -c, 'sleep 0.5; exit 9']\n  server:\n    image: busybox\n    command: {LOOP}\n"),
    );
    let out = env.berth(&["up", "--abort-on-container-failure", "--remove-orphans"]);
    assert_eq!(out.status.code(), Some(9), "{}", util::text(&out.stderr));
    // Mutually exclusive flags are errors.
    let err = env.fails(&["up", "-d", "--abort-on-container-exit"]);
    assert!(err.contains("cannot be combined"), "{err}");
    let err = env.fails(&[
        "up",
        "--abort-on-container-exit",
        "--abort-on-container-failure",
    ]);
    assert!(err.contains("cannot be combined"), "{err}");
    let err = env.fails(&["up", "--wait", "--exit-code-from", "ok"]);
    assert!(err.contains("cannot be combined"), "{err}");
    env.ok(&["down", "-t", "0"]);
}

#[test]
fn run_one_off_containers() {
    require_root!();
    let env = Env::new("ro");
    env.write(
        "compose.yaml",
        &format!("services:\n  db:\n    image: busybox\n    command: {LOOP}\n  app:\n    image: busybox\n    command: [echo, default]\n    environment: {{GREETING: hi}}\n    depends_on: [db]\n    ports: ['{}:80']\n", util::free_port()),
    );
    // Dependencies are started; the exit code and both streams come through.
    let out = env.berth(&[
        "run",
        "--rm",
        "-e",
        "EXTRA=x",
        "app",
        "sh",
        "-c",
        "echo $GREETING $EXTRA; nslookup db >/dev/null && echo 1; echo oops >&2; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", util::text(&out.stderr));
    assert_eq!(util::text(&out.stdout), "hi x\n1\n");
    assert!(util::text(&out.stderr).contains("oops"));
    // --rm removed the one-off; the dependency stays up.
    assert_eq!(names(&env), ["ro-db-1"]);
    // The default command, and -d printing the container's name.
    let out = env.ok(&["run", "--rm", "app"]);
    assert_eq!(out, "default\n");
    let name = env.ok(&[
        "run",
        "-d",
        "--name",
        "oneoff",
        "--entrypoint",
        "sleep",
        "app",
        "30",
    ]);
    assert_eq!(name.trim(), "oneoff");
    assert!(names(&env).contains(&"oneoff".to_string()));
    // As docker compose's, down leaves one-off containers to --remove-orphans.
    env.ok(&["down", "-t", "0"]);
    assert_eq!(names(&env), ["oneoff"]);
    env.ok(&["down", "-t", "0", "--remove-orphans"]);
    assert!(names(&env).is_empty());
}

#[test]
fn killed_up_is_finished_by_up_and_cleaned_by_down() {
    require_root!();
    let env = Env::new("kill9");
    let mut compose = String::from("services:\n");
    for i in 0..8 {
        compose.push_str(&format!(
            "  s{i}:\n    image: busybox\n    command: {LOOP}\n    ports: ['{}:80']\n",
            util::free_port()
        ));
    }
    env.write("compose.yaml", &compose);
    // Kill `up` at several points of its run; each time a new `up` must converge.
    for delay_ms in [30u64, 120, 250] {
        let mut child = std::process::Command::new(util::BERTH)
            .args(["up", "-d"])
            .current_dir(&env.dir)
            .env("BERTH_ROOT", env.root())
            .env("BERTH_SUBNET_POOL", &env.pool)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        env.ok(&["up", "-d"]);
        let running = env.ok(&["ps", "--status", "running", "-q"]);
        assert_eq!(
            running.lines().count(),
            8,
            "after a kill at {delay_ms} ms:\n{running}"
        );
    }
    // And a kill followed directly by down leaves nothing.
    env.ok(&["down", "-t", "0"]);
    let mut child = std::process::Command::new(util::BERTH)
        .args(["up", "-d"])
        .current_dir(&env.dir)
        .env("BERTH_ROOT", env.root())
        .env("BERTH_SUBNET_POOL", &env.pool)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let _ = child.kill();
    let _ = child.wait();
    let links = [util::bridges(env.root()), util::veths(env.root())].concat();
    env.ok(&["down", "-t", "0"]);
    assert_eq!(util::leftovers(env.root(), &links), Vec::<String>::new());
}
