//! Orchestration commands end to end (root only): `create`, `down --rmi`, `events --json`,
//! `depends_on.restart`, attached `up` across log rotation, and `--progress tty`.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::Env;

const LOOP: &str = "[sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1 & wait $$!; done']";

fn ps_json(env: &Env, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["ps", "--format", "json"];
    a.extend_from_slice(args);
    env.ok(&a)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `service` → (ID, State) of its first container.
fn container(env: &Env, service: &str) -> (String, String) {
    let all = ps_json(env, &["-a"]);
    let c = all
        .iter()
        .find(|c| c["Service"] == service)
        .unwrap_or_else(|| panic!("no container for {service}: {all:?}"));
    (
        c["ID"].as_str().unwrap().to_string(),
        c["State"].as_str().unwrap().to_string(),
    )
}

fn inspect(env: &Env, service: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", service])).unwrap();
    v[0].clone()
}

fn pid(env: &Env, service: &str) -> i64 {
    inspect(env, service)["State"]["Pid"].as_i64().unwrap_or(0)
}

#[test]
fn create_makes_containers_that_start_and_up_start_as_they_are() {
    require_root!();
    let env = Env::new("orchcreate");
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  db:\n    image: busybox\n    command: {LOOP}\n  web:\n    image: busybox\n    depends_on: [db]\n    command: {LOOP}\n"
        ),
    );
    let out = env.berth(&["create"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    assert!(util::text(&out.stderr).contains("orchcreate-web-1  Created"));
    // Created, not started: `ps` lists nothing, `ps -a` both as `created`.
    assert!(ps_json(&env, &[]).is_empty());
    let (web_id, state) = container(&env, "web");
    assert_eq!(state, "created");
    assert_eq!(container(&env, "db").1, "created");
    let table = env.ok(&["ps", "-a"]);
    assert!(table.contains("Created"), "{table}");

    // `start` starts them, as they are.
    env.ok(&["start"]);
    assert_eq!(container(&env, "web"), (web_id.clone(), "running".into()));
    assert_eq!(container(&env, "db").1, "running");

    // A second `create` changes nothing; `--force-recreate` makes new containers, not started.
    env.ok(&["create"]);
    assert_eq!(container(&env, "web"), (web_id.clone(), "running".into()));
    env.ok(&["create", "--force-recreate", "web"]);
    let (new_id, state) = container(&env, "web");
    assert_ne!(new_id, web_id);
    assert_eq!(state, "created");

    // `up` starts the created container itself (same id), it does not make another.
    env.ok(&["up", "-d"]);
    assert_eq!(container(&env, "web"), (new_id.clone(), "running".into()));

    // `--no-recreate` keeps a container whose configuration changed.
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  db:\n    image: busybox\n    command: {LOOP}\n  web:\n    image: busybox\n    environment: [CHANGED=1]\n    depends_on: [db]\n    command: {LOOP}\n"
        ),
    );
    env.ok(&["create", "--no-recreate"]);
    assert_eq!(container(&env, "web"), (new_id.clone(), "running".into()));
    env.ok(&["up", "-d", "--no-recreate"]);
    assert_eq!(container(&env, "web").0, new_id);
    env.ok(&["up", "-d"]);
    assert_ne!(container(&env, "web").0, new_id);
}

fn image_names(env: &Env) -> String {
    env.ok(&["images"])
}

#[test]
fn down_rmi_local_removes_built_images_and_all_every_image() {
    require_root!();
    let env = Env::new("orchrmi");
    std::fs::create_dir_all(env.dir.join("app")).unwrap();
    env.write("app/Dockerfile", "FROM busybox\nLABEL built=yes\n");
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    build: ./app\n    command: {LOOP}\n  tagged:\n    build: ./app\n    image: orchrmi-custom:1\n    command: {LOOP}\n  plain:\n    image: busybox\n    command: {LOOP}\n"
        ),
    );
    env.ok(&["up", "-d"]);
    let before = env.ok(&["image", "ls"]);
    assert!(before.contains("orchrmi-app"), "{before}");
    assert!(before.contains("orchrmi-custom"), "{before}");

    // local: only the image named after the project (no custom tag).
    let out = env.berth(&["down", "-t", "0", "--rmi", "local"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let after = image_names(&env);
    assert!(!after.contains("orchrmi-app"), "{after}");
    assert!(after.contains("orchrmi-custom"), "{after}");
    assert!(after.contains("busybox"), "{after}");

    // all: every image the services use, also with only `-p` and no compose file.
    env.ok(&["up", "-d"]);
    std::fs::remove_file(env.dir.join("compose.yaml")).unwrap();
    let out = env.berth(&["-p", "orchrmi", "down", "-t", "0", "--rmi", "all"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let after = image_names(&env);
    for gone in ["orchrmi-app", "orchrmi-custom", "busybox"] {
        assert!(!after.contains(gone), "{gone} left: {after}");
    }
    assert!(util::leftovers(env.root(), &[]).is_empty());
}

/// Runs `berth events --json` in the background; returns its lines once `until` holds.
struct Events {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Events {
    fn start(env: &Env, args: &[&str]) -> Events {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["events", "--json"])
            .args(args)
            .current_dir(&env.dir)
            .env("BERTH_ROOT", env.root())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        // Let it open the log before anything happens.
        std::thread::sleep(Duration::from_millis(500));
        Events { child, lines }
    }

    /// The events received until one has `action` for `service`, or a timeout.
    fn until(&self, got: &mut Vec<serde_json::Value>, service: &str, action: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !got
            .iter()
            .any(|e| e["service"] == service && e["action"] == action)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => got.push(serde_json::from_str(&l).unwrap()),
                Err(_) => panic!("no {action} event for {service}: {got:#?}"),
            }
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn actions(got: &[serde_json::Value], service: &str) -> Vec<String> {
    got.iter()
        .filter(|e| e["service"] == service)
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn events_json_streams_what_up_and_stop_do() {
    require_root!();
    let env = Env::new("orchevents");
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: busybox\n    command: {LOOP}\n    healthcheck:\n      test: [CMD, 'true']\n      interval: 1s\n  other:\n    image: busybox\n    command: {LOOP}\n"
        ),
    );
    let all = Events::start(&env, &[]);
    let only_other = Events::start(&env, &["other"]);
    env.ok(&["up", "-d"]);
    let mut got = Vec::new();
    all.until(&mut got, "web", "health_status: healthy");
    env.ok(&["stop", "-t", "5", "web"]);
    all.until(&mut got, "web", "stop");
    assert_eq!(
        actions(&got, "web"),
        [
            "create",
            "start",
            "health_status: healthy",
            "kill",
            "die",
            "stop"
        ],
        "{got:#?}"
    );
    let e = got
        .iter()
        .find(|e| e["action"] == "create" && e["service"] == "web")
        .unwrap();
    assert_eq!(e["type"], "container");
    assert_eq!(e["attributes"]["name"], "orchevents-web-1");
    assert_eq!(e["attributes"]["image"], "busybox");
    assert_eq!(e["id"].as_str().unwrap().len(), 64);
    assert!(
        chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).is_ok(),
        "{e}"
    );
    let die = got.iter().find(|e| e["action"] == "die").unwrap();
    assert_eq!(die["attributes"]["exitCode"], "0");

    // The service filter: nothing of web.
    let mut other = Vec::new();
    only_other.until(&mut other, "other", "start");
    env.ok(&["down", "-t", "0"]);
    only_other.until(&mut other, "other", "destroy");
    assert!(other.iter().all(|e| e["service"] == "other"), "{other:#?}");
}

#[test]
fn depends_on_restart_true_restarts_the_dependent_with_its_dependency() {
    require_root!();
    let env = Env::new("orchrestart");
    let compose = |db_env: &str| {
        format!(
            "services:\n  db:\n    image: busybox\n    environment: [V={db_env}]\n    command: {LOOP}\n  app:\n    image: busybox\n    depends_on:\n      db: {{condition: service_started, restart: true}}\n    command: {LOOP}\n  other:\n    image: busybox\n    depends_on:\n      db: {{condition: service_started}}\n    command: {LOOP}\n"
        )
    };
    env.write("compose.yaml", &compose("1"));
    env.ok(&["up", "-d"]);
    let (app_pid, other_pid) = (pid(&env, "app"), pid(&env, "other"));
    assert!(app_pid > 0 && other_pid > 0);

    // `restart db`: app (restart: true) restarts too, other does not.
    env.ok(&["restart", "-t", "5", "db"]);
    let app_pid2 = pid(&env, "app");
    assert!(app_pid2 > 0 && app_pid2 != app_pid, "app was not restarted");
    assert_eq!(pid(&env, "other"), other_pid);

    // An `up` that recreates db restarts app (same container, new process); other is kept.
    let (app_id, _) = container(&env, "app");
    let (db_id, _) = container(&env, "db");
    env.write("compose.yaml", &compose("2"));
    let out = env.berth(&["up", "-d"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    assert_ne!(container(&env, "db").0, db_id);
    assert_eq!(container(&env, "app"), (app_id, "running".into()));
    let app_pid3 = pid(&env, "app");
    assert!(
        app_pid3 > 0 && app_pid3 != app_pid2,
        "app was not restarted by up"
    );
    assert_eq!(pid(&env, "other"), other_pid);

    // Nothing changed: nothing restarts.
    env.ok(&["up", "-d"]);
    assert_eq!(pid(&env, "app"), app_pid3);
}

#[test]
fn attached_up_follows_a_log_across_rotations() {
    require_root!();
    let env = Env::new("orchrotate");
    env.write(
        "compose.yaml",
        "services:\n  talk:\n    image: busybox\n    logging:\n      options: {max-size: 1k, max-file: '100'}\n    command: [sh, -c, 'i=1; while [ $$i -le 150 ]; do echo line-$$i; i=$$((i+1)); sleep 0.01; done']\n",
    );
    // Enough files that none is deleted before it is read (a loaded machine may start the
    // follower late): this checks following across rotations, not the retention.
    let out = env.berth(&["up", "--no-color"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let stdout = util::text(&out.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split("| ").nth(1))
        .collect();
    let want: Vec<String> = (1..=150).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, want, "{stdout}");
    assert!(stdout.contains("talk-1 exited with code 0"), "{stdout}");
    // The log did rotate.
    let (id, _) = container(&env, "talk");
    assert!(
        env.root()
            .join(format!("containers/{id}/container.log.1"))
            .exists()
    );
}

#[test]
fn progress_tty_draws_live_lines_and_plain_stays_plain() {
    require_root!();
    let env = Env::new("orchprogress");
    env.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: busybox\n    command: {LOOP}\n"),
    );
    let out = env.berth(&["--progress", "tty", "up", "-d"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let err = util::text(&out.stderr);
    // Redrawn in place (cursor movement and line clearing), ending in the final states.
    assert!(err.contains("\x1b[2K"), "{err:?}");
    assert!(
        err.contains("\u{2714} Container orchprogress-web-1  Started"),
        "{err:?}"
    );
    assert!(
        err.contains("\u{2714} Network orchprogress_default  Created"),
        "{err:?}"
    );
    assert!(out.stdout.is_empty());

    let out = env.berth(&["--progress", "plain", "stop", "-t", "0"]);
    let err = util::text(&out.stderr);
    assert_eq!(
        err,
        " Container orchprogress-web-1  Stopping\n Container orchprogress-web-1  Stopped\n"
    );
    // Not a terminal: `auto` is plain.
    let out = env.berth(&["start"]);
    let err = util::text(&out.stderr);
    assert!(!err.contains('\x1b'), "{err:?}");
    assert!(
        err.contains(" Container orchprogress-web-1  Started\n"),
        "{err:?}"
    );
}

/// `berth compose images` is docker compose's: one row per container of the project, with its
/// image; `berth images` stays the image store's listing, as `docker images` is.
#[test]
fn compose_images_lists_the_projects_containers_images() {
    require_root!();
    let env = Env::new("orchimages");
    env.ok(&["tag", "busybox", "orchimages-other:2"]);
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: busybox\n    command: {LOOP}\n    scale: 2\n  db:\n    image: orchimages-other:2\n    command: {LOOP}\n"
        ),
    );
    env.ok(&["up", "-d"]);
    let table = env.ok(&["compose", "images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "CONTAINER",
            "REPOSITORY",
            "TAG",
            "PLATFORM",
            "IMAGE",
            "ID",
            "SIZE",
            "CREATED"
        ],
        "{table}"
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0][..3],
        ["orchimages-db-1", "orchimages-other", "2"],
        "{table}"
    );
    assert_eq!(
        rows[1][..3],
        ["orchimages-web-1", "busybox", "latest"],
        "{table}"
    );
    assert_eq!(
        rows[2][..3],
        ["orchimages-web-2", "busybox", "latest"],
        "{table}"
    );
    assert!(rows[1][3].starts_with("linux/"), "{table}");

    // JSON: one object per line, docker compose's ImageSummary fields.
    let json: Vec<serde_json::Value> = env
        .ok(&["compose", "images", "--format", "json", "web"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 2);
    assert_eq!(json[0]["ContainerName"], "orchimages-web-1");
    assert_eq!(json[0]["Repository"], "busybox");
    assert_eq!(json[0]["Tag"], "latest");
    assert!(json[0]["ID"].as_str().unwrap().starts_with("sha256:"));
    assert!(json[0]["Size"].as_u64().unwrap() > 0);
    assert_eq!(json[0]["Platform"]["os"], "linux");

    // -q: the distinct image ids, in full; both names here are one image.
    let ids = env.ok(&["compose", "images", "-q"]);
    assert_eq!(ids.lines().count(), 1, "{ids}");
    assert_eq!(ids.trim().len(), 64, "{ids}");

    // Without `compose`: the store, which knows nothing of containers.
    let store = env.ok(&["images"]);
    assert!(
        store.lines().next().unwrap().starts_with("REPOSITORY"),
        "{store}"
    );
    let err = env.fails(&["images", "a", "b"]);
    assert!(err.contains("at most 1 argument"), "{err}");
}
