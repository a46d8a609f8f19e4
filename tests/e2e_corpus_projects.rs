//! docker compose's own e2e projects (../shared/corpus/docker-compose/e2e), run unchanged with
//! the assertions of the docker compose test that owns them (root only). Their `alpine` and
//! `bash` images are busybox tagged under those names. The projects left out, with the reason
//! for each, are listed in tests/compose_e2e_projects.md.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod common;
mod util;

use util::Env;

/// A test root with the corpus project `dir` (relative to the e2e folder) copied in as the
/// project folder; `None` (the test skips) when the corpus is absent.
fn project(dir: &str, name: &str) -> Option<Env> {
    let src = common::corpus()?.join("docker-compose/e2e").join(dir);
    let env = Env::new(name);
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), env.dir.join(e.file_name())).unwrap();
        }
    }
    for alias in ["alpine", "bash"] {
        env.ok(&["tag", "busybox", alias]);
    }
    Some(env)
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn states(env: &Env) -> Vec<(String, String, i64)> {
    env.ok(&["ps", "-a", "--format", "json"])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["Name"].as_str().unwrap().to_string(),
                v["State"].as_str().unwrap().to_string(),
                v["ExitCode"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn cascade_stop() {
    require_root!();
    let Some(env) = project("testdata/TestCascadeStop", "e2e-cascade-stop") else {
        return;
    };
    let out = env.berth(&["up", "--abort-on-container-exit"]);
    let (stdout, stderr) = (util::text(&out.stdout), util::text(&out.stderr));
    assert!(stdout.contains("exit-1 exited with code 0"), "{stdout}");
    assert!(stderr.contains("Aborting on container exit..."), "{stderr}");
    assert_eq!(code(&out), 0, "{stdout}\n{stderr}");
}

#[test]
fn cascade_fail() {
    require_root!();
    let Some(env) = project("testdata/TestCascadeFail", "e2e-cascade-fail") else {
        return;
    };
    let out = env.berth(&["up", "--abort-on-container-failure"]);
    let stdout = util::text(&out.stdout);
    assert!(stdout.contains("exit-1 exited with code 0"), "{stdout}");
    assert!(stdout.contains("fail-1 exited with code 111"), "{stdout}");
    assert_eq!(code(&out), 111, "{stdout}");
}

#[test]
fn up_exit_code_from() {
    require_root!();
    let Some(env) = project("testdata/TestUpExitCodeFrom", "e2e-exit-code-from") else {
        return;
    };
    let out = env.berth(&["up", "--exit-code-from", "failure", "failure"]);
    let stdout = util::text(&out.stdout);
    assert!(stdout.contains("exiting with error"), "{stdout}");
    assert_eq!(code(&out), 42, "{stdout}");
}

#[test]
fn up_wait_with_a_one_shot_dependency() {
    require_root!();
    let Some(env) = project("testdata/TestUpWait", "e2e-up-wait") else {
        return;
    };
    let out = env.berth(&["up", "--wait", "-d"]);
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    let s = states(&env);
    assert!(
        s.contains(&("e2e-up-wait-oneshot-1".into(), "exited".into(), 0)),
        "{s:?}"
    );
    assert!(
        s.contains(&("e2e-up-wait-longrunning-1".into(), "running".into(), 0)),
        "{s:?}"
    );
}

#[test]
fn init_container() {
    require_root!();
    let Some(env) = project("testdata/TestInitContainer", "e2e-init") else {
        return;
    };
    let out = env.berth(&["up"]);
    let stdout = util::text(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}");
    let foo = stdout.find("foo-1  | hello").expect(&stdout);
    let bar = stdout.find("bar-1  | world").expect(&stdout);
    assert!(foo < bar, "{stdout}");
}

#[test]
fn up_with_dependency_exit() {
    require_root!();
    let Some(env) = project("testdata/TestUpWithDependencyExit", "e2e-dep-exit") else {
        return;
    };
    let out = env.berth(&["up", "-d"]);
    let stderr = util::text(&out.stderr);
    assert_eq!(code(&out), 1, "{stderr}");
    assert!(stderr.contains("dependency failed to start"), "{stderr}");
    assert!(stderr.contains("e2e-dep-exit-db-1 exited (1)"), "{stderr}");
}

#[test]
fn up_with_dependency_not_required() {
    require_root!();
    let Some(env) = project(
        "testdata/TestUpWithDependencyNotRequired",
        "e2e-dep-not-required",
    ) else {
        return;
    };
    let out = env.berth(&["up", "-d"]);
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    let s = states(&env);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].0, "e2e-dep-not-required-foo-1");
}

#[test]
fn scale_basic_cases() {
    require_root!();
    let Some(env) = project("testdata/TestScaleBasicCases", "e2e-scale") else {
        return;
    };
    env.ok(&["up", "-d"]);
    let names = |env: &Env| -> Vec<String> {
        let mut n: Vec<String> = states(env).into_iter().map(|s| s.0).collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&env),
        [
            "e2e-scale-back-1",
            "e2e-scale-db-1",
            "e2e-scale-front-1",
            "e2e-scale-front-2"
        ]
    );
    // Scale up and down with --scale: replica numbers are reused, dbadmin appears on demand.
    env.ok(&["up", "-d", "--scale", "front=3", "--scale", "dbadmin=1"]);
    assert_eq!(
        names(&env),
        [
            "e2e-scale-back-1",
            "e2e-scale-db-1",
            "e2e-scale-dbadmin-1",
            "e2e-scale-front-1",
            "e2e-scale-front-2",
            "e2e-scale-front-3"
        ]
    );
    env.ok(&["up", "-d", "--scale", "front=1"]);
    assert!(!names(&env).contains(&"e2e-scale-front-2".to_string()));
}

#[test]
fn start_stop_with_dependencies() {
    require_root!();
    let Some(env) = project("testdata/TestStartStopWithDependencies", "e2e-startstop") else {
        return;
    };
    env.ok(&["up", "-d"]);
    env.ok(&["stop", "-t", "0", "foo"]);
    let running = |env: &Env| -> Vec<String> {
        states(env)
            .into_iter()
            .filter(|s| s.1 == "running")
            .map(|s| s.0)
            .collect()
    };
    assert_eq!(running(&env), ["e2e-startstop-bar-1"]);
    env.ok(&["start", "foo"]);
    assert_eq!(running(&env).len(), 2);
    env.ok(&["down", "-t", "0"]);
    assert!(states(&env).is_empty());
}

#[test]
fn simple_composefile_and_logs() {
    require_root!();
    let Some(env) = project("fixtures/simple-composefile", "e2e-simple") else {
        return;
    };
    let out = env.berth(&["up", "-d"]);
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    assert!(!states(&env).is_empty());
    env.ok(&["down", "-t", "0"]);
    assert!(states(&env).is_empty());
}

fn running(env: &Env) -> Vec<String> {
    let mut r: Vec<String> = states(env)
        .into_iter()
        .filter(|s| s.1 == "running")
        .map(|s| s.0)
        .collect();
    r.sort();
    r
}

#[test]
fn start_single_service_and_dependency() {
    require_root!();
    let Some(env) = project("testdata/TestStartSingleServiceAndDependency", "e2e-start1") else {
        return;
    };
    env.ok(&["create", "desired"]);
    assert!(running(&env).is_empty());
    env.ok(&["start", "desired"]);
    assert_eq!(
        running(&env),
        [
            "e2e-start1-dep_1-1",
            "e2e-start1-dep_2-1",
            "e2e-start1-desired-1"
        ]
    );
}

#[test]
fn up_service_unhealthy() {
    require_root!();
    let Some(env) = project("testdata/TestUpServiceUnhealthy", "e2e-unhealthy") else {
        return;
    };
    let out = env.berth(&["up", "-d"]);
    let stderr = util::text(&out.stderr);
    assert_eq!(code(&out), 1, "{stderr}");
    assert!(
        stderr.contains("dependency failed to start: container e2e-unhealthy-fail-1 is unhealthy"),
        "{stderr}"
    );
}

#[test]
fn up_wait_timeout() {
    require_root!();
    let Some(env) = project("testdata/TestUpWaitTimeout", "e2e-wait-timeout") else {
        return;
    };
    let start = std::time::Instant::now();
    let out = env.berth(&["up", "--wait", "--wait-timeout", "3"]);
    assert_eq!(code(&out), 1, "{}", util::text(&out.stderr));
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn profiles_none_explicit_and_targeted() {
    require_root!();
    let Some(env) = project("testdata/TestNoProfileUsage", "e2e-profiles") else {
        return;
    };
    env.ok(&["up", "-d"]);
    assert_eq!(running(&env), ["e2e-profiles-regular-service-1"]);
    env.ok(&["down", "-t", "0"]);
    env.ok(&["--profile", "test-profile", "up", "-d"]);
    assert_eq!(
        running(&env),
        [
            "e2e-profiles-profiled-service-1",
            "e2e-profiles-regular-service-1"
        ]
    );
    env.ok(&["down", "-t", "0"]);
    // Naming a profiled service enables it, and only it.
    env.ok(&["up", "-d", "profiled-service"]);
    assert_eq!(running(&env), ["e2e-profiles-profiled-service-1"]);
}

#[test]
fn up_exit_code_from_container_killed() {
    require_root!();
    let Some(env) = project(
        "testdata/TestUpExitCodeFromContainerKilled",
        "e2e-exit-killed",
    ) else {
        return;
    };
    // `failure` exits first; the abort stops `test`, whose code (SIGTERM) is the result.
    let out = env.berth(&["up", "-t", "5", "--exit-code-from", "test"]);
    let stdout = util::text(&out.stdout);
    assert!(stdout.contains("exiting with error"), "{stdout}");
    assert_eq!(code(&out), 143, "{stdout}\n{}", util::text(&out.stderr));
}

/// The replica numbers of a service's containers, sorted.
fn replicas(env: &Env, service: &str) -> Vec<u32> {
    let mut n: Vec<u32> = env
        .ok(&["ps", "-a", "--format", "json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["Service"] == service)
        .filter_map(|v| v["Name"].as_str()?.rsplit('-').next()?.parse().ok())
        .collect();
    n.sort();
    n
}

fn container_id(env: &Env, name: &str) -> String {
    env.ok(&["ps", "-a", "--format", "json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["Name"] == name)
        .and_then(|v| v["ID"].as_str().map(String::from))
        .unwrap_or_default()
}

#[test]
fn scale_doesnt_recreate() {
    require_root!();
    let Some(env) = project("testdata/TestScaleDoesntRecreate", "e2e-scale-norecreate") else {
        return;
    };
    env.ok(&["up", "-d"]);
    assert_eq!(replicas(&env, "simple"), [1]);
    let first = container_id(&env, "e2e-scale-norecreate-simple-1");
    let out = env.berth(&["up", "--scale", "simple=2", "-d"]);
    assert_eq!(code(&out), 0);
    assert_eq!(replicas(&env, "simple"), [1, 2]);
    assert!(!util::text(&out.stderr).contains("Recreated"));
    assert_eq!(container_id(&env, "e2e-scale-norecreate-simple-1"), first);
}

#[test]
fn scale_with_deps_cases() {
    require_root!();
    let Some(env) = project("testdata/TestScaleWithDepsCases", "e2e-scale-deps") else {
        return;
    };
    env.ok(&["up", "-d", "--scale", "db=2"]);
    assert_eq!(replicas(&env, "db"), [1, 2]);
    // scale --no-deps leaves the dependency alone...
    env.ok(&["scale", "--no-deps", "back=2"]);
    assert_eq!(replicas(&env, "back"), [1, 2]);
    assert_eq!(replicas(&env, "db"), [1, 2]);
    // ...a plain scale reconciles it to the model.
    env.ok(&["scale", "back=2"]);
    assert_eq!(replicas(&env, "back"), [1, 2]);
    assert_eq!(replicas(&env, "db"), [1]);
}

#[test]
fn scale_up_and_down_preserve_container_number() {
    require_root!();
    let Some(env) = project(
        "testdata/TestScaleUpAndDownPreserveContainerNumber",
        "e2e-scale-numbers",
    ) else {
        return;
    };
    env.ok(&["up", "-d", "--scale", "db=2", "db"]);
    assert_eq!(replicas(&env, "db"), [1, 2]);
    env.ok(&["up", "-d", "--scale", "db=1", "db"]);
    assert_eq!(replicas(&env, "db"), [1]);
    env.ok(&["up", "-d", "--scale", "db=2", "db"]);
    assert_eq!(replicas(&env, "db"), [1, 2]);
}

#[test]
fn scale_down_removes_obsolete() {
    require_root!();
    let Some(env) = project(
        "testdata/TestScaleDownRemovesObsolete",
        "e2e-scale-obsolete",
    ) else {
        return;
    };
    env.ok(&["up", "-d", "db"]);
    assert_eq!(replicas(&env, "db"), [1]);
    let with_env = |args: &[&str]| {
        let out = env.command(args).env("MAYBE", "value").output().unwrap();
        assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    };
    with_env(&["up", "-d", "--scale", "db=2", "db"]);
    assert_eq!(replicas(&env, "db"), [1, 2]);
    with_env(&["up", "-d", "--scale", "db=1", "db"]);
    assert_eq!(replicas(&env, "db"), [1]);
}

#[test]
fn up_recreate_volumes() {
    require_root!();
    let Some(env) = project("testdata/TestUpRecreateVolumes", "e2e-recreate-volumes") else {
        return;
    };
    // berth has no `volume inspect`: the label is read from the volume's record.
    let label = |env: &Env| -> String {
        let rec = std::fs::read_to_string(
            env.root()
                .join("volumes/e2e-recreate-volumes_my_vol/volume.json"),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
        v["labels"]["foo"].as_str().unwrap_or_default().to_string()
    };
    env.ok(&["up", "-d"]);
    assert_eq!(label(&env), "bar");
    let out = env
        .command(&["up", "-d", "-y"])
        .env("VOL_LABEL", "zot")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    assert_eq!(label(&env), "zot");
}

#[test]
fn remove_orphaned() {
    require_root!();
    let Some(env) = project("testdata/TestRemoveOrphaned", "e2e-remove-orphaned") else {
        return;
    };
    env.ok(&["up", "-d"]);
    // down scoped to one service leaves the others alone.
    env.ok(&["down", "--remove-orphans", "web"]);
    let s = states(&env);
    assert!(!s.iter().any(|c| c.0.contains("-web-")), "{s:?}");
    for svc in ["words", "db"] {
        assert!(
            s.iter()
                .any(|c| c.0 == format!("e2e-remove-orphaned-{svc}-1") && c.1 == "running"),
            "{s:?}"
        );
    }
}

#[test]
fn network_recreate() {
    require_root!();
    let Some(env) = project("fixtures/network-recreate", "e2e-network-recreate") else {
        return;
    };
    env.ok(&["tag", "busybox", "nginx"]);
    env.ok(&["up", "-d"]);
    // The network's labels change (FOO): it is recreated with the container on it.
    let out = env
        .command(&["--progress=plain", "up", "-d"])
        .env("FOO", "bar")
        .output()
        .unwrap();
    let err = util::text(&out.stderr);
    assert_eq!(code(&out), 0, "{err}");
    assert!(err.contains("Stopped"), "{err}");
    assert!(
        err.contains("Started") || err.contains("Recreated"),
        "{err}"
    );
}

#[test]
fn up_recreate_volumes_ignore_binds() {
    require_root!();
    let Some(env) = project(
        "testdata/TestUpRecreateVolumesIgnoreBinds",
        "e2e-ignore-binds",
    ) else {
        return;
    };
    env.ok(&["up", "-d"]);
    let first = container_id(&env, "e2e-ignore-binds-app-1");
    let out = env.berth(&["up", "-d"]);
    assert_eq!(code(&out), 0);
    assert!(!util::text(&out.stderr).contains("Recreated"));
    assert_eq!(container_id(&env, "e2e-ignore-binds-app-1"), first);
}

#[test]
fn remove_orphans_from_dot_env() {
    require_root!();
    let Some(env) = project("testdata/TestRemoveOrphans", "e2e-remove-orphans") else {
        return;
    };
    // The project's `.env` (docker compose's fixture has it; the corpus copy dropped dot files).
    env.write(".env", "COMPOSE_REMOVE_ORPHANS=true\n");
    env.ok(&["run", "orphan"]);
    let s = states(&env);
    assert!(
        s.len() == 1 && s[0].0.starts_with("e2e-remove-orphans-orphan-run-") && s[0].1 == "exited",
        "{s:?}"
    );
    env.ok(&["up", "-d"]);
    let s = states(&env);
    assert_eq!(
        s,
        [(
            "e2e-remove-orphans-test-1".to_string(),
            "running".to_string(),
            0
        )]
    );
}

#[test]
fn attach_restart() {
    require_root!();
    let Some(env) = project("fixtures/attach-restart", "attach-restart") else {
        return;
    };
    // Every exit is reported, also those the restart policy (on-failure, 2 attempts) restarts
    // from; up returns after the last.
    let out = env.berth(&["--ansi=never", "up"]);
    let stdout = util::text(&out.stdout);
    assert_eq!(
        stdout.matches("failing-1 exited with code 1").count(),
        3,
        "{stdout}"
    );
    assert_eq!(stdout.matches("failing-1  | world").count(), 3, "{stdout}");
}

#[test]
fn network_config_changed() {
    require_root!();
    let Some(env) = project("testdata/TestNetworkConfigChanged", "e2e-net-changed") else {
        return;
    };
    // docker compose's test uses 172.99.0.0/16, then 192.168.0.0/16, which may be a LAN of the
    // host: two /24s at the top of this test's own pool instead.
    let third: u32 = env.pool.split('.').nth(2).unwrap().parse().unwrap();
    let subnet = |i: u32| format!("10.213.{}.0/24", third + i);
    let up = |subnet: &str| {
        let out = env
            .command(&["up", "-d"])
            .env("SUBNET", subnet)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    };
    up(&subnet(14));
    let ip = env.ok(&["exec", "test", "hostname", "-i"]);
    assert!(ip.starts_with(&format!("10.213.{}.", third + 14)), "{ip}");
    let first = container_id(&env, "e2e-net-changed-test-1");
    // A changed subnet replaces the network and moves the same container onto it.
    up(&subnet(15));
    let s = states(&env);
    assert_eq!(
        s,
        [(
            "e2e-net-changed-test-1".to_string(),
            "running".to_string(),
            0
        )]
    );
    assert_eq!(container_id(&env, "e2e-net-changed-test-1"), first);
    let ip = env.ok(&["exec", "test", "hostname", "-i"]);
    assert!(ip.starts_with(&format!("10.213.{}.", third + 15)), "{ip}");
}

#[test]
fn up_dependencies_not_stopped() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    require_root!();
    let Some(env) = project("fixtures/ups-deps-stop", "up-deps-stop") else {
        return;
    };
    let state = |service: &str| -> String {
        states(&env)
            .into_iter()
            .find(|s| s.0 == format!("up-deps-stop-{service}-1"))
            .map(|s| s.1)
            .unwrap_or_default()
    };
    env.ok(&["-f", "orphan.yaml", "up", "--wait", "--detach", "orphan"]);
    assert_eq!(state("orphan"), "running");
    // An attached `up app`, in a process group of its own as a shell would run it.
    let mut child = env
        .command(&["-f", "compose.yaml", "up", "--menu=false", "app"])
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("hello app") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("app never said hello");
    assert_eq!(state("app"), "running");
    assert_eq!(state("dependency"), "running");
    // Ctrl-C: the services named to up stop, their dependencies and the rest keep running.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success() || status.code() == Some(130), "{status:?}");
    assert_eq!(state("app"), "exited");
    assert_eq!(state("dependency"), "running");
    assert_eq!(state("orphan"), "running");
}

#[test]
fn stop_with_dependencies_attached() {
    require_root!();
    let Some(env) = project(
        "testdata/TestStopWithDependenciesAttached",
        "e2e-stop-deps-attached",
    ) else {
        return;
    };
    // up returns when the attached service exits, reporting its exit.
    let out = env.berth(&["up", "--attach-dependencies", "foo", "--menu=false"]);
    let stdout = util::text(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}\n{}", util::text(&out.stderr));
    assert!(stdout.contains("exited with code 0"), "{stdout}");
}

/// The `config-hash` label of a service's first container, from `berth inspect`.
fn hash_label(env: &Env, service: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", service])).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    v["Config"]["Labels"]["com.docker.compose.config-hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no config-hash label on {service}: {v}"))
        .to_string()
}

fn ids(env: &Env) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = env
        .ok(&["ps", "-a", "--format", "json"])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["Service"].as_str().unwrap().to_string(),
                v["ID"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// TestConfigHashMatchesContainerLabel: `config --hash` prints each container's label; and
/// `up` recreates exactly the service whose hash changed.
#[test]
fn config_hash_matches_container_label() {
    require_root!();
    let Some(env) = project("fixtures/config_hash", "e2e-config-hash") else {
        return;
    };
    env.ok(&["up", "-d", "--force-recreate"]);
    let mut labels = Vec::new();
    for service in ["optional-env", "plain", "with-env-file"] {
        let label = hash_label(&env, service);
        let out = env.ok(&["config", "--hash", service]);
        let fields: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(fields, [service, label.as_str()], "config --hash {service}");
        labels.push(format!("{service} {label}"));
    }
    assert_eq!(env.ok(&["config", "--hash", "*"]).trim(), labels.join("\n"));

    // Nothing changed: nothing is recreated.
    let before = ids(&env);
    env.ok(&["up", "-d"]);
    assert_eq!(ids(&env), before);
    // The env file's content is part of the hash: only its service is recreated, and its new
    // label is again what `config --hash` prints.
    env.write("app.env", "EXAMPLE=changed\n");
    env.ok(&["up", "-d"]);
    let after = ids(&env);
    for ((service, old), (_, new)) in before.iter().zip(&after) {
        assert_eq!(
            old == new,
            service != "with-env-file",
            "{service}: {old} {new}"
        );
    }
    let out = env.ok(&["config", "--hash", "with-env-file"]);
    assert_eq!(
        out.split_whitespace().nth(1),
        Some(hash_label(&env, "with-env-file").as_str())
    );
    env.ok(&["down", "-t", "0"]);
}

/// TestUnusedMissingEnvFile: a missing env file fails only the commands that
/// make containers of its service; commands that only read the project work.
#[test]
fn unused_missing_env_file() {
    require_root!();
    let Some(env) = project("fixtures/env_file", "e2e-unused-env") else {
        return;
    };
    env.ok(&["tag", "busybox", "nginx:latest"]);
    // busybox's own command exits at once: serviceA sleeps (and publishes a port) instead;
    // its image is never pulled (the tag is local), so `pull` needs no registry.
    env.write(
        "compose.override.yaml",
        "services:\n  serviceA:\n    command: [sleep, infinity]\n    ports: ['127.0.0.1::80']\n    pull_policy: never\n",
    );
    env.ok(&["pull", "serviceA"]);
    env.ok(&["build"]);
    env.ok(&["up", "-d", "serviceA"]);
    env.ok(&["ps"]);
    env.ok(&["logs"]);
    assert_eq!(
        env.ok(&["exec", "-T", "serviceA", "echo", "hello"]),
        "hello\n"
    );
    env.ok(&["top", "serviceA"]);
    assert!(
        env.ok(&["port", "serviceA", "80"])
            .starts_with("127.0.0.1:")
    );
    env.ok(&["inspect", "serviceA"]);
    let copied = env.dir.join("hostname.txt");
    env.ok(&["cp", "serviceA:/etc/hostname", copied.to_str().unwrap()]);
    assert!(copied.exists());
    env.ok(&["pause", "serviceA"]);
    env.ok(&["unpause", "serviceA"]);
    env.ok(&["restart", "-t", "0", "serviceA"]);
    env.ok(&["kill", "serviceA"]);
    assert_eq!(code(&env.berth(&["wait", "serviceA"])), 137);
    env.ok(&["start", "serviceA"]);
    env.ok(&["stop", "-t", "0", "serviceA"]);
    env.ok(&["rm", "-f", "serviceA"]);
    env.ok(&["config", "--hash", "serviceA"]);
    env.ok(&["config", "--no-env-resolution", "--hash", "serviceB"]);

    // What makes serviceB's containers (or shows its resolved environment) fails, pointing at
    // the env_file entry.
    for args in [
        &["up", "-d", "serviceB"][..],
        &["create", "serviceB"],
        &["run", "--rm", "serviceB", "true"],
        &["config", "--hash", "serviceB"],
        &["config", "--hash", "*"],
        &["config"],
    ] {
        let err = env.fails(args);
        assert!(
            err.contains("env file /doesnotexist/.env not found")
                && err.contains("compose.yaml:8:")
                && err.contains("services.serviceB.env_file[0]"),
            "berth {args:?}: {err}"
        );
    }
    // A profiled service named by `run` is enabled, and only its own env file must exist.
    let out = env.ok(&["run", "--rm", "serviceC", "env"]);
    assert!(out.lines().any(|l| l == "FOO=BAR"), "{out}");
    env.ok(&["down", "-t", "0"]);
    assert!(states(&env).is_empty());
}

/// TestRunEnvFile: `run` enables the profiled service and reads its env file relative to the
/// project directory.
#[test]
fn run_env_file() {
    require_root!();
    let Some(env) = project("testdata/TestRunEnvFile", "e2e-run-env-file") else {
        return;
    };
    let out = env.ok(&["run", "--rm", "serviceC", "env"]);
    assert!(out.lines().any(|l| l == "FOO=BAR"), "{out}");
}

/// TestStartInterval: `start_interval` without `start_period` fails `up` of that service with
/// docker compose's message (before anything is made); another service of the file starts and
/// its faster start-period checks make it healthy well before its 30 s interval.
#[test]
fn start_interval_requires_start_period() {
    require_root!();
    let Some(env) = project("testdata/TestStartInterval", "e2e-start-interval") else {
        return;
    };
    let out = env.berth(&["up", "--wait", "-d", "error"]);
    let err = util::text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("healthcheck.start_interval requires healthcheck.start_period to be set")
            && err.contains("compose.yaml:18:")
            && err.contains("services.error.healthcheck.start_interval"),
        "{err}"
    );
    assert!(states(&env).is_empty(), "{:?}", states(&env));
    // `config` shows such a file, as docker compose's does.
    env.ok(&["config", "-q"]);
    let t = std::time::Instant::now();
    env.ok(&["up", "--wait", "-d", "test"]);
    assert!(t.elapsed() < std::time::Duration::from_secs(30));
    env.wait_ps("test", "healthy", |v| v["Health"] == "healthy");
    env.ok(&["down", "-t", "0"]);
}

/// A label of a service's first container, from `berth inspect` ("" when absent).
fn label(env: &Env, service: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", service])).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    v["Config"]["Labels"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const DEPENDS_ON: &str = "com.docker.compose.depends_on";

/// TestUpNoDeps: `up --no-deps foo` makes foo only, though foo links bar; as docker compose
/// (compose-go drops the dependencies left out of the selection), foo's `depends_on` label
/// then lists none.
#[test]
fn up_no_deps() {
    require_root!();
    let Some(env) = project("testdata/TestUpNoDeps", "e2e-up-no-deps") else {
        return;
    };
    env.ok(&["up", "--no-deps", "-d", "foo"]);
    let s = states(&env);
    assert!(
        s.iter()
            .any(|(n, st, _)| n == "e2e-up-no-deps-foo-1" && st == "running"),
        "{s:?}"
    );
    assert!(!s.iter().any(|(n, ..)| n.contains("-bar-")), "{s:?}");
    assert_eq!(label(&env, "foo", DEPENDS_ON), "");
}

/// TestRecreateWithNoDeps: `up --force-recreate --no-deps my-service` replaces my-service and
/// leaves its healthy dependency alone. The new container's `depends_on` label is written as
/// docker compose writes it, from the selected services only: `dep` is no longer listed.
#[test]
fn recreate_with_no_deps() {
    require_root!();
    let Some(env) = project("testdata/TestRecreateWithNoDeps", "e2e-recreate-no-deps") else {
        return;
    };
    env.ok(&["up", "-d", "--wait"]);
    assert_eq!(
        label(&env, "my-service", DEPENDS_ON),
        "dep:service_healthy:false"
    );
    let before = ids(&env);
    env.ok(&["up", "-d", "--force-recreate", "--no-deps", "my-service"]);
    let after = ids(&env);
    let id = |v: &[(String, String)], s: &str| {
        v.iter()
            .find(|(svc, _)| svc == s)
            .map(|(_, id)| id.clone())
            .unwrap()
    };
    assert_ne!(id(&before, "my-service"), id(&after, "my-service"));
    assert_eq!(id(&before, "dep"), id(&after, "dep"));
    let s = states(&env);
    assert!(
        s.iter()
            .all(|(n, st, _)| st == "running" || !n.contains("my-service")),
        "{s:?}"
    );
    assert_eq!(label(&env, "my-service", DEPENDS_ON), "");
}

/// TestNoDepsVolumeFrom and TestNoDepsNetworkMode: `up --no-deps app` keeps using the donor
/// container while it exists, and is refused with docker compose's message once it is gone.
#[test]
fn no_deps_volumes_from_and_network_mode() {
    require_root!();
    for (dir, name, message) in [
        (
            "testdata/TestNoDepsVolumeFrom",
            "e2e-no-deps-vf",
            "cannot share volume with service db: container missing",
        ),
        (
            "testdata/TestNoDepsNetworkMode",
            "e2e-no-deps-nm",
            "cannot share network namespace with service db: container missing",
        ),
    ] {
        let Some(env) = project(dir, name) else {
            return;
        };
        env.ok(&["up", "-d"]);
        let before = ids(&env);
        assert_eq!(before.len(), 2, "{before:?}");
        env.ok(&["up", "--no-deps", "-d", "app"]);
        assert_eq!(ids(&env), before, "{dir}: nothing recreated");
        // The donor goes behind compose's back.
        env.ok(&["rm", "-s", "-f", "db"]);
        assert!(!ids(&env).iter().any(|(s, _)| s == "db"));
        let out = env.berth(&["up", "--no-deps", "-d", "app"]);
        let stderr = util::text(&out.stderr);
        assert_eq!(code(&out), 1, "{dir}: {stderr}");
        assert!(stderr.contains(message), "{dir}: {stderr}");
    }
}

/// fixtures/run-test (TestComposeRunPipedInput): piped stdin reaches `run`'s container, which
/// then gets no terminal; asking for one (`--tty`, `--no-tty=false`) with piped stdin fails.
#[test]
fn run_piped_input() {
    require_root!();
    let Some(env) = project("fixtures/run-test", "run-piped-test") else {
        return;
    };
    let run = |args: &[&str], stdin: &[u8]| {
        let mut all = vec![
            "-p",
            "run-piped-test",
            "-f",
            "piped-test.yaml",
            "run",
            "--rm",
        ];
        all.extend(args);
        util::output_with_stdin(&mut env.command(&all), stdin)
    };
    let out = run(&["piped-test"], b"piped-content\n");
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    assert!(util::text(&out.stdout).contains("piped-content"));
    let out = run(&["tty-test"], b"\n");
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    assert!(util::text(&out.stdout).contains("No TTY detected"));
    for flag in ["--tty", "--no-tty=false"] {
        let out = run(&[flag, "piped-test"], b"test\n");
        assert_eq!(code(&out), 1, "{flag}");
        assert!(
            util::text(&out.stderr).contains(
                "cannot attach stdin to a TTY-enabled container because stdin is not a terminal"
            ),
            "{flag}: {}",
            util::text(&out.stderr)
        );
    }
}

/// TestRawEnvFile: an `env_file` in `format: raw` reaches the container uninterpolated,
/// quotes included.
#[test]
fn raw_env_file() {
    require_root!();
    let Some(env) = project("testdata/TestRawEnvFile", "e2e-raw-env-file") else {
        return;
    };
    let out = env.berth(&["run", "--rm", "test"]);
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    let stdout = util::text(&out.stdout);
    assert!(stdout.contains(r#"'{"key": "value"}'"#), "{stdout}");
}

/// TestUnnecessaryResources: a missing external network fails only the services using it;
/// `up test` makes none of the networks `test` does not use.
#[test]
fn unnecessary_resources() {
    require_root!();
    let Some(env) = project("testdata/TestUnnecessaryResources", "e2e-unnecessary") else {
        return;
    };
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("network foo_bar declared as external, but could not be found"),
        "{err}"
    );
    env.ok(&["up", "-d", "test"]);
    let s = states(&env);
    assert!(
        s.iter()
            .any(|(n, st, _)| n == "e2e-unnecessary-test-1" && st == "running"),
        "{s:?}"
    );
}

/// TestUpSwitchVolumes: changing the external volume a service mounts (its `name:` from
/// `EXTERNAL_VOLUME`) recreates the container on the new volume.
#[test]
fn up_switch_volumes() {
    require_root!();
    let Some(env) = project("testdata/TestUpSwitchVolumes", "e2e-switch-volumes") else {
        return;
    };
    let (vol1, vol2) = ("e2e-switch-volumes-ext-1", "e2e-switch-volumes-ext-2");
    env.ok(&["volume", "create", vol1]);
    env.ok(&["volume", "create", vol2]);
    let mounted = |vol: &str| {
        let out = env
            .command(&["inspect", "app"])
            .env("EXTERNAL_VOLUME", vol)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let v = if v.is_array() { v[0].clone() } else { v };
        v["Mounts"][0]["Name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    for vol in [vol1, vol2] {
        let out = env
            .command(&["up", "-d"])
            .env("EXTERNAL_VOLUME", vol)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
        assert_eq!(mounted(vol), vol);
    }
    let out = env
        .command(&["down", "-t", "0"])
        .env("EXTERNAL_VOLUME", vol2)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    env.ok(&["volume", "rm", vol1, vol2]);
}

/// TestLocalComposeExecOneOff: `exec` reaches a `run -d` one-off, but `--index 1` only
/// numbered replicas (busybox has `env` in /bin, not /usr/bin).
#[test]
fn exec_one_off() {
    require_root!();
    let Some(env) = project("testdata/TestLocalComposeExecOneOff", "e2e-exec-one-off") else {
        return;
    };
    env.ok(&["run", "-d", "simple", "top"]);
    let out = env.ok(&["exec", "-e", "FOO", "simple", "env"]);
    assert!(!out.contains("FOO="), "{out}");
    assert!(out.contains("PATH="), "{out}");
    let out = env.berth(&["exec", "--index", "1", "-e", "FOO", "simple", "env"]);
    assert_eq!(code(&out), 1);
    assert!(
        util::text(&out.stderr).contains(r#"service "simple" is not running container #1"#),
        "{}",
        util::text(&out.stderr)
    );
    env.ok(&["down", "-t", "0", "--remove-orphans"]);
}

/// The state of a service's first container ("" when it has none).
fn service_state(env: &Env, service: &str) -> String {
    env.ok(&["ps", "-a", "--format", "json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["Service"] == service)
        .and_then(|v| v["State"].as_str().map(String::from))
        .unwrap_or_default()
}

/// TestPause, TestPauseServiceNotRunning, TestPauseServiceAlreadyPaused and
/// TestPauseServiceDoesNotExist.
#[test]
fn pause_cases() {
    require_root!();
    let Some(env) = project("testdata/TestPause", "e2e-pause") else {
        return;
    };
    env.ok(&["up", "-d"]);
    env.ok(&["pause", "a"]);
    assert_eq!(service_state(&env, "a"), "paused");
    assert_eq!(service_state(&env, "b"), "running");
    let before = ids(&env);
    env.ok(&["unpause", "a"]);
    assert_eq!(service_state(&env, "a"), "running");
    assert_eq!(service_state(&env, "b"), "running");
    assert_eq!(ids(&env), before, "nothing recreated");

    let Some(env) = project("testdata/TestPauseServiceNotRunning", "e2e-pause-none") else {
        return;
    };
    env.ok(&["pause", "a"]);

    let Some(env) = project("testdata/TestPauseServiceAlreadyPaused", "e2e-pause-twice") else {
        return;
    };
    env.ok(&["up", "-d"]);
    env.ok(&["pause", "a"]);
    assert_eq!(service_state(&env, "a"), "paused");
    let out = env.berth(&["pause", "a"]);
    assert_eq!(code(&out), 1);
    assert!(
        util::text(&out.stderr).contains("already paused"),
        "{}",
        util::text(&out.stderr)
    );
    env.ok(&["unpause", "a"]);

    let Some(env) = project("testdata/TestPauseServiceDoesNotExist", "e2e-pause-unknown") else {
        return;
    };
    let out = env.berth(&["pause", "does_not_exist"]);
    assert_eq!(code(&out), 1);
    assert!(
        util::text(&out.stderr).contains("no such service: does_not_exist"),
        "{}",
        util::text(&out.stderr)
    );
}

/// TestWaitOnFaster, TestWaitOnSlower and TestWaitAndDrop.
#[test]
fn wait_cases() {
    require_root!();
    let Some(env) = project("testdata/TestWaitOnFaster", "e2e-wait") else {
        return;
    };
    env.ok(&["up", "-d"]);
    env.ok(&["wait", "faster"]);
    assert_eq!(service_state(&env, "faster"), "exited");
    assert_eq!(service_state(&env, "infinity"), "running");
    env.ok(&["wait", "slower"]);
    assert_eq!(service_state(&env, "faster"), "exited");
    assert_eq!(service_state(&env, "slower"), "exited");
    assert_eq!(service_state(&env, "infinity"), "running");

    let Some(env) = project("testdata/TestWaitAndDrop", "e2e-wait-drop") else {
        return;
    };
    env.ok(&["up", "-d"]);
    env.ok(&["wait", "--down-project", "faster"]);
    assert!(ids(&env).is_empty(), "{:?}", ids(&env));
}

/// TestUpContainerNameConflict: two services with one `container_name` are refused together,
/// leaving nothing behind, and each runs alone.
#[test]
fn up_container_name_conflict() {
    require_root!();
    let Some(env) = project("testdata/TestUpContainerNameConflict", "e2e-name-conflict") else {
        return;
    };
    let name = "e2e-name-conflict-fixed";
    let run = |args: &[&str]| env.command(args).env("FIXED_NAME", name).output().unwrap();
    let containers = || util::text(&run(&["ps", "-a", "--format", "json"]).stdout);
    let out = run(&["up"]);
    assert_eq!(code(&out), 1);
    let err = util::text(&out.stderr);
    assert!(
        err.contains(&format!(r#"container name "{name}" is already in use"#)),
        "{err}"
    );
    let out = run(&["down"]);
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    assert_eq!(containers(), "", "the failed up left nothing");
    for service in ["test", "another_test"] {
        let out = run(&["up", service]);
        assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
        let ps = containers();
        let v: serde_json::Value = serde_json::from_str(ps.trim()).expect(&ps);
        assert_eq!(v["Name"], name, "{ps}");
        assert_eq!(v["Service"], service, "{ps}");
        assert_eq!(v["State"], "exited", "{ps}");
        assert_eq!(code(&run(&["down"])), 0);
        assert_eq!(containers(), "");
    }
}

/// Every container of the project, one-offs included: name → (service, state).
fn all_states(env: &Env) -> std::collections::BTreeMap<String, (String, String)> {
    env.ok(&["ps", "-a", "--format", "json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["Name"].as_str().unwrap_or_default().to_string(),
                (
                    v["Service"].as_str().unwrap_or_default().to_string(),
                    v["State"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

/// TestStartStopWithOneOffs: `stop`, `start` and `restart` act on the services, not on a
/// `run -d` one-off; `down --remove-orphans` removes it too.
#[test]
fn start_stop_with_one_offs() {
    require_root!();
    let Some(env) = project("testdata/TestStartStopWithOneOffs", "e2e-one-offs") else {
        return;
    };
    env.ok(&["up", "-d"]);
    let services = ids(&env);
    let one_off = env.ok(&["run", "-d", "bar", "sleep", "infinity"]);
    let one_off = one_off.trim();
    let state = |name: &str| {
        all_states(&env)
            .get(name)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    };
    assert_eq!(state(one_off), "running");
    env.ok(&["stop"]);
    assert_eq!(service_state(&env, "foo"), "exited");
    assert_eq!(service_state(&env, "bar"), "exited");
    assert_eq!(state(one_off), "running");
    env.ok(&["start"]);
    assert_eq!(service_state(&env, "foo"), "running");
    assert_eq!(service_state(&env, "bar"), "running");
    env.ok(&["restart"]);
    assert_eq!(service_state(&env, "foo"), "running");
    assert_eq!(service_state(&env, "bar"), "running");
    assert_eq!(state(one_off), "running");
    let now: Vec<_> = ids(&env)
        .into_iter()
        .filter(|(_, id)| services.iter().any(|(_, i)| i == id))
        .collect();
    assert_eq!(now, services, "nothing recreated");
    env.ok(&["down", "--remove-orphans"]);
    assert!(all_states(&env).is_empty());
}

/// TestComposeRunDeps: `run service_a` starts its dependency and nothing else; with
/// `--no-deps` (and COMPOSE_IGNORE_ORPHANS) nothing but the one-off.
#[test]
fn compose_run_deps() {
    require_root!();
    let Some(env) = project("testdata/TestComposeRunDeps", "e2e-run-deps") else {
        return;
    };
    let out = env.berth(&["run", "service_a"]);
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    let all = format!("{}{}", util::text(&out.stdout), util::text(&out.stderr));
    assert!(all.contains("shared_dep"), "{all}");
    assert!(!all.contains("service_b"), "{all}");
    let s = all_states(&env);
    assert!(s.values().any(|(svc, _)| svc == "shared_dep"), "{s:?}");
    assert!(!s.values().any(|(svc, _)| svc == "service_b"), "{s:?}");
    let dep = ids(&env)
        .into_iter()
        .find(|(s, _)| s == "shared_dep")
        .unwrap();
    let out = env
        .command(&["run", "--no-deps", "service_a"])
        .env("COMPOSE_IGNORE_ORPHANS", "True")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    let all = format!("{}{}", util::text(&out.stdout), util::text(&out.stderr));
    assert!(!all.contains("service_b"), "{all}");
    assert!(!all.contains("shared_dep"), "{all}");
    assert!(ids(&env).contains(&dep), "shared_dep not recreated");
    assert!(!all_states(&env).values().any(|(svc, _)| svc == "service_b"));
}

/// TestComposeRunNotRequiredDeps: a `required: false` dependency whose profile is off is
/// not made by `run`.
#[test]
fn compose_run_not_required_deps() {
    require_root!();
    let Some(env) = project("testdata/TestComposeRunNotRequiredDeps", "e2e-run-optional") else {
        return;
    };
    let out = env.berth(&["run", "foo"]);
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    assert!(util::text(&out.stdout).contains("foo"));
    assert!(!all_states(&env).values().any(|(svc, _)| svc == "bar"));
}

/// TestRm: `rm --stop --force SERVICE` removes that service's containers; without a service,
/// every one.
#[test]
fn rm_stop_force() {
    require_root!();
    let Some(env) = project("testdata/TestRm", "e2e-rm") else {
        return;
    };
    env.ok(&["up", "-d"]);
    env.ok(&["rm", "--stop", "--force", "simple"]);
    assert_eq!(service_state(&env, "simple"), "");
    assert_eq!(service_state(&env, "another"), "running");
    env.ok(&["up", "-d"]);
    assert_eq!(service_state(&env, "simple"), "running");
    env.ok(&["rm", "--stop", "--force"]);
    assert!(all_states(&env).is_empty());
}

/// TestRestart: `restart` brings an exited service back, the same container.
#[test]
fn restart_reuses_the_container() {
    require_root!();
    let Some(env) = project("testdata/TestRestart", "e2e-restart") else {
        return;
    };
    env.ok(&["up", "-d"]);
    env.wait_ps("app", "exited", |v| v["State"] == "exited");
    let before = ids(&env);
    env.ok(&["restart"]);
    env.wait_ps("app", "running", |v| v["State"] == "running");
    assert_eq!(ids(&env), before);
}

/// TestStartStop: `stop` keeps the containers, `ls` hides a stopped project unless `--all`,
/// `start` brings the same containers back.
#[test]
fn start_stop_and_ls() {
    require_root!();
    let Some(env) = project("testdata/TestStartStop", "e2e-start-stop") else {
        return;
    };
    let listed = |all: bool| {
        let mut args = vec!["ls", "--format", "json"];
        if all {
            args.push("--all");
        }
        env.ok(&args).contains(r#""Name":"e2e-start-stop""#)
    };
    env.ok(&["up", "-d"]);
    assert!(listed(false));
    let before = ids(&env);
    env.ok(&["stop"]);
    assert_eq!(service_state(&env, "simple"), "exited");
    assert_eq!(service_state(&env, "another"), "exited");
    assert!(!listed(false));
    assert!(listed(true));
    env.ok(&["start"]);
    assert_eq!(service_state(&env, "simple"), "running");
    assert_eq!(service_state(&env, "another"), "running");
    assert_eq!(ids(&env), before);
}

/// TestUpImageID: a service's image given by its bare id.
#[test]
fn up_image_id() {
    require_root!();
    let Some(env) = project("testdata/TestUpImageID", "e2e-image-id") else {
        return;
    };
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "inspect", "alpine"])).unwrap();
    let id = v[0]["Id"].as_str().unwrap();
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    let out = env.command(&["up"]).env("ID", id).output().unwrap();
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    let out = env.command(&["down"]).env("ID", id).output().unwrap();
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
}

/// TestExec: with only a `run -d` one-off, `exec` lands in it (`--index=1` finds no replica);
/// once `up` made the service's container, `exec` prefers that one.
#[test]
fn exec_prefers_the_service_container() {
    require_root!();
    let Some(env) = project("testdata/TestExec", "e2e-exec") else {
        return;
    };
    env.ok(&["run", "-d", "test", "cat"]);
    let out = env.berth(&["exec", "--index=1", "test", "ps"]);
    assert_eq!(code(&out), 1);
    assert!(
        util::text(&out.stderr).contains(r#"service "test" is not running container #1"#),
        "{}",
        util::text(&out.stderr)
    );
    let ps = env.ok(&["exec", "test", "ps"]);
    assert!(ps.contains("cat"), "{ps}");
    env.ok(&["up", "-d"]);
    assert_eq!(service_state(&env, "test"), "running");
    let ps = env.ok(&["exec", "test", "ps"]);
    assert!(ps.contains("tail"), "{ps}");
    env.ok(&["down", "-t", "0", "--remove-orphans"]);
}

/// TestUpProfile: `up foo` (foo in an inactive profile) starts foo and its dependency, not
/// its profile sibling.
#[test]
fn up_profile() {
    require_root!();
    let Some(env) = project("testdata/TestUpProfile", "e2e-up-profile") else {
        return;
    };
    env.ok(&["up", "foo"]);
    assert_eq!(service_state(&env, "foo"), "exited");
    assert_eq!(service_state(&env, "db"), "exited");
    assert_eq!(service_state(&env, "bar"), "");
}

/// TestExposeRange: a port range in `expose` is accepted.
#[test]
fn expose_range() {
    require_root!();
    let Some(env) = project("testdata/TestExposeRange", "e2e-expose-range") else {
        return;
    };
    env.ok(&["up"]);
}

/// TestStdoutStderr: attached `up` relays each container stream to its own. The fixture's
/// `log_to_stderr.sh` is not in the corpus: this one prints a line to each stream.
#[test]
fn stdout_stderr() {
    require_root!();
    let Some(env) = project("testdata/TestStdoutStderr", "e2e-stdout-stderr") else {
        return;
    };
    env.write(
        "log_to_stderr.sh",
        "echo 'log to stdout'\necho 'log to stderr' >&2\n",
    );
    let out = env.berth(&["up", "--menu=false"]);
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    let (stdout, stderr) = (util::text(&out.stdout), util::text(&out.stderr));
    assert!(stdout.contains("log to stdout"), "{stdout}");
    assert!(!stdout.contains("log to stderr"), "{stdout}");
    assert!(stderr.contains("log to stderr"), "{stderr}");
}

/// TestNetworkModes: `run` of a service whose `network_mode` is another service's starts
/// that service and shares its namespace.
#[test]
fn network_modes_run() {
    require_root!();
    let Some(env) = project("testdata/TestNetworkModes", "e2e-network-modes") else {
        return;
    };
    let out = env.berth(&["run", "-T", "mydb", "echo", "success"]);
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    assert!(util::text(&out.stdout).contains("success"));
    assert_eq!(service_state(&env, "db"), "running");
    env.ok(&["down", "-t", "0", "--remove-orphans"]);
}

/// TestLocalComposeExec: exit codes propagate; `-e FOO` passes FOO only when the caller has
/// it (`env` for `/usr/bin/env`: busybox has it in /bin).
#[test]
fn local_compose_exec() {
    require_root!();
    let Some(env) = project("testdata/TestLocalComposeExec", "e2e-local-exec") else {
        return;
    };
    env.ok(&["up", "-d"]);
    env.ok(&["exec", "simple", "/bin/true"]);
    assert_eq!(code(&env.berth(&["exec", "simple", "/bin/false"])), 1);
    let out = env
        .command(&["exec", "-e", "FOO", "simple", "env"])
        .env("FOO", "BAR")
        .output()
        .unwrap();
    assert!(util::text(&out.stdout).contains("FOO=BAR"));
    let out = env
        .command(&["exec", "-e", "FOO", "simple", "env"])
        .env_remove("FOO")
        .output()
        .unwrap();
    assert!(!util::text(&out.stdout).contains("FOO="));
}

/// TestLocalComposeLogs: `logs` of all, one and several services, and `--index`.
#[test]
fn local_compose_logs() {
    require_root!();
    let Some(env) = project("testdata/TestLocalComposeLogs", "e2e-local-logs") else {
        return;
    };
    env.ok(&["up", "-d"]);
    env.wait_ps("hello", "exited", |v| v["State"] == "exited");
    env.wait_ps("ping", "exited", |v| v["State"] == "exited");
    let all = env.ok(&["logs"]);
    assert!(all.contains("PING localhost"), "{all}");
    assert!(all.contains("hello"), "{all}");
    let ping = env.ok(&["logs", "ping"]);
    assert!(ping.contains("PING localhost"), "{ping}");
    assert!(!ping.contains("hello"), "{ping}");
    let both = env.ok(&["logs", "hello", "ping"]);
    assert!(
        both.contains("PING localhost") && both.contains("hello"),
        "{both}"
    );
    let second = env.ok(&["logs", "--index", "2", "hello"]);
    assert!(second.contains("hello-2"), "{second}");
    assert!(!second.contains("hello-1"), "{second}");
}

/// TestCopy: `cp` into a service reaches every replica, `--index` one; out of it, replica 1
/// or the chosen one; folders both ways.
#[test]
fn copy_to_and_from_replicas() {
    require_root!();
    let Some(env) = project("testdata/TestCopy", "e2e-copy") else {
        return;
    };
    env.write("cp-me.txt", "hello world\n");
    std::fs::create_dir_all(env.dir.join("cp-folder")).unwrap();
    env.write("cp-folder/cp-me.txt", "hello world from folder\n");
    env.ok(&["up", "--scale", "nginx=5", "-d"]);
    let cat =
        |index: &str, path: &str| env.berth(&["exec", "--index", index, "nginx", "cat", path]);
    env.ok(&["cp", "cp-me.txt", "nginx:/tmp/default.txt"]);
    for i in ["1", "3"] {
        let out = cat(i, "/tmp/default.txt");
        assert!(
            util::text(&out.stdout).contains("hello world"),
            "replica {i}"
        );
    }
    env.ok(&["cp", "--index=3", "cp-me.txt", "nginx:/tmp/indexed.txt"]);
    assert!(util::text(&cat("3", "/tmp/indexed.txt").stdout).contains("hello world"));
    assert_eq!(code(&cat("2", "/tmp/indexed.txt")), 1);
    env.ok(&["cp", "nginx:/tmp/default.txt", "from-default.txt"]);
    let read = |p: &str| std::fs::read_to_string(env.dir.join(p)).unwrap_or_default();
    assert!(read("from-default.txt").contains("hello world"));
    env.ok(&[
        "cp",
        "--index=3",
        "nginx:/tmp/indexed.txt",
        "from-indexed.txt",
    ]);
    assert!(read("from-indexed.txt").contains("hello world"));
    env.ok(&["cp", "cp-folder", "nginx:/tmp"]);
    assert!(
        util::text(&cat("1", "/tmp/cp-folder/cp-me.txt").stdout)
            .contains("hello world from folder")
    );
    env.ok(&["cp", "nginx:/tmp/cp-folder", "cp-folder2"]);
    assert!(read("cp-folder2/cp-me.txt").contains("hello world from folder"));
}

/// TestComposeRun: `run` with the service's command or an override, its dependency started;
/// an earlier one-off is reported as an orphan unless COMPOSE_IGNORE_ORPHANS; `--rm`,
/// `--volumes`, `--env-from-file` and `--env`.
#[test]
fn compose_run() {
    require_root!();
    let Some(env) = project("testdata/TestComposeRun", "e2e-compose-run") else {
        return;
    };
    let run = |args: &[&str], ignore_orphans: bool| {
        let mut all = vec!["run"];
        all.extend(args);
        let mut cmd = env.command(&all);
        if ignore_orphans {
            cmd.env("COMPOSE_IGNORE_ORPHANS", "True");
        }
        let out = cmd.output().unwrap();
        assert_eq!(code(&out), 0, "{args:?}: {}", util::text(&out.stderr));
        (util::text(&out.stdout), util::text(&out.stderr))
    };
    let (out, err) = run(&["back"], false);
    assert!(out.contains("Hello there!!"), "{out}");
    assert!(!err.contains("orphan") && !out.contains("orphan"), "{err}");
    assert_eq!(service_state(&env, "db"), "running");
    assert_eq!(service_state(&env, "front"), "");
    let one_offs = || {
        all_states(&env)
            .into_iter()
            .filter(|(n, (s, _))| s == "back" && n.contains("-run-"))
            .collect::<Vec<_>>()
    };
    assert_eq!(one_offs().len(), 1);
    assert_eq!(one_offs()[0].1.1, "exited");
    let (out, err) = run(&["back", "echo", "Hello one more time"], false);
    assert!(out.contains("Hello one more time"), "{out}");
    assert!(err.contains("orphan"), "{err}");
    let (out, err) = run(&["back", "echo", "Hello again"], true);
    assert!(out.contains("Hello again"), "{out}");
    assert!(!err.contains("orphan"), "{err}");
    let before = one_offs();
    let (out, _) = run(&["--rm", "back", "echo", "Hello and gone"], true);
    assert!(out.contains("Hello and gone"), "{out}");
    assert_eq!(one_offs(), before, "--rm leaves the earlier one-offs alone");
    let volume = format!("{}:/foo", env.dir.display());
    let (out, _) = run(
        &["--volumes", &volume, "back", "/bin/sh", "-c", "ls /foo"],
        true,
    );
    assert!(out.contains("compose.yaml"), "{out}");
    let env_file = env.dir.join("run.env");
    let (out, _) = run(
        &[
            "--env-from-file",
            env_file.to_str().unwrap(),
            "front",
            "env",
        ],
        true,
    );
    assert!(out.contains("FOO=BAR"), "{out}");
    let (out, _) = run(&["--env", "FOO=BAR", "front", "env"], true);
    assert!(out.contains("FOO=BAR"), "{out}");
    env.ok(&["down", "-t", "0", "--remove-orphans"]);
}

/// fixtures/logs-test, TestLocalComposeLogsFollow: `logs -f` also follows the containers an
/// `up` or a scale makes meanwhile.
#[test]
fn logs_follow_takes_new_containers() {
    require_root!();
    let Some(env) = project("fixtures/logs-test", "compose-e2e-logs") else {
        return;
    };
    let with = |args: &[&str]| {
        let mut all = vec!["-f", "compose.yaml", "--project-name", "compose-e2e-logs"];
        all.extend(args);
        let out = env.command(&all).env("REPEAT", "20").output().unwrap();
        assert_eq!(code(&out), 0, "{args:?}: {}", util::text(&out.stderr));
    };
    with(&["up", "-d", "ping"]);
    let mut follower = env
        .command(&["--project-name", "compose-e2e-logs", "logs", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut expect = |want: &str, secs: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !seen.contains(want) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    seen.push_str(&l);
                    seen.push('\n');
                }
                Err(_) => panic!("logs -f never showed {want:?}:\n{seen}"),
            }
        }
    };
    expect("ping-1 ", 5);
    with(&["up", "-d"]);
    expect("hello-1 ", 5);
    with(&["up", "-d", "--scale", "ping=2", "ping"]);
    expect("ping-2 ", 20);
    // Killed by its pid; the containers go with the test's `down`.
    let _ = follower.kill();
    let _ = follower.wait();
}

/// fixtures/logs-test, TestLocalComposeLargeLogs: 300,000 lines through attached `up`, and
/// the exit line after them.
#[test]
fn large_logs() {
    require_root!();
    let Some(env) = project("fixtures/logs-test", "compose-e2e-large-logs") else {
        return;
    };
    let file = env.dir.join("large.txt");
    let mut text = String::new();
    for i in 0..300_000 {
        text.push_str(&format!("This is line {i} in a laaaarge text file\n"));
    }
    std::fs::write(&file, text).unwrap();
    let out = env
        .command(&[
            "-f",
            "cat.yaml",
            "--project-name",
            "compose-e2e-large-logs",
            "up",
            "--abort-on-container-exit",
            "--menu=false",
        ])
        .env("FILE", &file)
        .output()
        .unwrap();
    let stdout = util::text(&out.stdout);
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
    assert!(stdout.contains("This is line 299999 in"), "the last line");
    assert!(stdout.contains("test-1 exited with code 0"));
    let out = env
        .command(&[
            "-f",
            "cat.yaml",
            "--project-name",
            "compose-e2e-large-logs",
            "down",
        ])
        .env("FILE", &file)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", util::text(&out.stderr));
}

/// docker compose's TestMacAddress: the service's `mac_address`, as `inspect` reports it.
#[test]
fn mac_address() {
    require_root!();
    let Some(env) = project("testdata/TestMacAddress", "e2e-mac-address") else {
        return;
    };
    env.ok(&["up", "-d"]);
    let mac = env.ok(&[
        "inspect",
        "e2e-mac-address-test-1",
        "-f",
        "{{ (index .NetworkSettings.Networks \"e2e-mac-address_default\" ).MacAddress }}",
    ]);
    assert_eq!(mac.trim(), "00:e0:84:35:d0:e8");
    // And inside the container, on its interface.
    let inside = env.ok(&["exec", "-T", "test", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(inside.trim(), "00:e0:84:35:d0:e8");
}

/// docker compose's TestIPAMConfig: the fixed address, as `inspect` reports it under
/// `IPAMConfig`; a container without one gets a null `IPAMConfig` and Docker's classic
/// `02:42:`-and-its-address MAC.
#[test]
fn ipam_config() {
    require_root!();
    let Some(env) = project("testdata/TestIPAMConfig", "e2e-ipam-config") else {
        return;
    };
    let yaml = std::fs::read_to_string(env.dir.join("compose.yaml")).unwrap();
    env.write(
        "compose.yaml",
        &yaml.replace(
            "services:\n",
            "services:\n  bar:\n    image: alpine\n    command: [sleep, \"600\"]\n",
        ),
    );
    env.ok(&["up", "-d"]);
    let ip = env.ok(&[
        "inspect",
        "e2e-ipam-config-foo-1",
        "-f",
        "{{ (index .NetworkSettings.Networks \"e2e-ipam-config_default\").IPAMConfig.IPv4Address }}",
    ]);
    assert_eq!(ip.trim(), "10.1.0.100");
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "e2e-ipam-config-bar-1"])).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    let net = &v["NetworkSettings"]["Networks"]["e2e-ipam-config_default"];
    assert!(net["IPAMConfig"].is_null(), "{net}");
    let ip: std::net::Ipv4Addr = net["IPAddress"].as_str().unwrap().parse().unwrap();
    let o = ip.octets();
    let want = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    assert_eq!(net["MacAddress"], want.as_str(), "{net}");
    let inside = env.ok(&["exec", "-T", "bar", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(inside.trim(), want);
}
