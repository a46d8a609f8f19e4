//! Compose `build:` end to end (root only): `up` builds missing images and runs them,
//! `berth build [SERVICE...]`, `up --build` / `--no-build`, `pull_policy: build`.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::time::{Duration, Instant};
use util::Env;

/// Polls `berth logs SERVICE` until it contains `want`.
fn wait_logs(env: &Env, service: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = env.ok(&["logs", "--no-log-prefix", service]);
        if out.contains(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} never printed {want:?}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn image_id(env: &Env, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["image", "inspect", name])).unwrap();
    v[0]["Id"].as_str().unwrap().to_owned()
}

const COMPOSE: &str = r#"
services:
  app:
    build:
      context: ./app
      args:
        MSG: from-args
      labels:
        com.example.built: "yes"
      tags: ["app-extra:1"]
      extra_hosts: ["db=10.1.2.3"]
    command: [sh, -c, 'cat /msg /hosts-at-build; sleep 1000']
  inline:
    image: inline-img:v1
    pull_policy: build
    build:
      dockerfile_inline: |
        FROM busybox AS base
        RUN echo stage-one > /one
        FROM base
        RUN echo inline-built > /msg
      target: ""
    command: [sh, -c, 'cat /msg /one; sleep 1000']
"#;

#[test]
fn up_builds_missing_images_and_runs_them() {
    require_root!();
    let env = Env::new("cb");
    std::fs::create_dir_all(env.dir.join("app")).unwrap();
    env.write(
        "app/Dockerfile",
        "FROM busybox\nARG MSG=default\nRUN echo \"$MSG\" > /msg && grep db /etc/hosts > /hosts-at-build\n",
    );
    env.write("compose.yaml", &COMPOSE.replace("      target: \"\"\n", ""));

    let out = env.berth(&["up", "-d"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let err = util::text(&out.stderr);
    assert!(err.contains("Image cb-app  Built"), "{err}");
    wait_logs(&env, "app", "from-args");
    wait_logs(&env, "app", "10.1.2.3\tdb");
    wait_logs(&env, "inline", "inline-built");
    wait_logs(&env, "inline", "stage-one");

    // The default name, the extra tag and the label.
    let id = image_id(&env, "cb-app");
    assert_eq!(image_id(&env, "app-extra:1"), id);
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "inspect", "cb-app"])).unwrap();
    assert_eq!(v[0]["Config"]["Labels"]["com.example.built"], "yes");
    let ps = env.ok(&["ps", "--format", "json"]);
    assert!(ps.contains("\"cb-app\""), "{ps}");

    // A second `up`: the image of app exists, nothing is built and nothing recreated. The
    // inline service has `pull_policy: build`: rebuilt (from the cache), same image, kept.
    let out = env.berth(&["up", "-d"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let err = util::text(&out.stderr);
    assert!(!err.contains("Image cb-app  Building"), "{err}");
    assert!(err.contains("Image inline-img:v1  Built"), "{err}");
    assert!(
        !err.contains("Recreate") && !err.contains("Removed"),
        "{err}"
    );

    // A changed Dockerfile: `up` alone keeps the old image, `up --build` rebuilds and
    // recreates the container.
    env.write(
        "app/Dockerfile",
        "FROM busybox\nARG MSG\nRUN echo \"changed $MSG\" > /msg && touch /hosts-at-build\n",
    );
    env.ok(&["up", "-d"]);
    assert_eq!(image_id(&env, "cb-app"), id);
    let out = env.berth(&["up", "-d", "--build"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    assert_ne!(image_id(&env, "cb-app"), id);
    wait_logs(&env, "app", "changed from-args");

    // `--no-build` with the image gone is an error naming the service, before anything changes.
    env.ok(&["down", "-t", "0"]);
    env.ok(&["rmi", "-f", "cb-app", "app-extra:1"]);
    let err = env.fails(&["up", "-d", "--no-build"]);
    assert!(
        err.contains("\"app\"") && err.contains("--no-build"),
        "{err}"
    );
    assert!(env.ok(&["ps", "-a", "-q"]).trim().is_empty());
}

#[test]
fn build_command_takes_services_or_a_directory() {
    require_root!();
    let env = Env::new("cbs");
    std::fs::create_dir_all(env.dir.join("app")).unwrap();
    env.write(
        "app/Dockerfile",
        "FROM busybox\nARG MSG=x\nRUN echo $MSG > /msg\n",
    );
    env.write(
        "compose.yaml",
        "services:\n  app:\n    build: ./app\n  plain:\n    image: busybox\n",
    );
    // Project form: every service with a build section, or the named ones.
    let out = env.berth(&["build", "--build-arg", "MSG=cli"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let first = image_id(&env, "cbs-app");
    let out = env.ok(&["build", "-q", "app", "--build-arg", "MSG=cli"]);
    assert_eq!(out.trim(), first, "a cached rebuild gives the same image");
    let err = env.fails(&["build", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    // Dockerfile form: a directory (here also the name of no service), or any -t.
    env.ok(&["build", "-t", "direct", "app"]);
    env.ok(&["build", "app/"]);
    assert_ne!(
        image_id(&env, "direct"),
        first,
        "no build arg: a different image"
    );
}
