//! Compose `build:` end to end (root only): `up` builds missing images and runs them,
//! `berth build [SERVICE...]`, `up --build` / `--no-build`, `pull_policy: build`.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use util::Env;

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
    env.wait_logs("app", "from-args");
    env.wait_logs("app", "10.1.2.3\tdb");
    env.wait_logs("inline", "inline-built");
    env.wait_logs("inline", "stage-one");

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
    env.wait_logs("app", "changed from-args");

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
    // `-q` prints nothing at all, as docker compose build does.
    let out = env.berth(&["build", "-q", "app", "--build-arg", "MSG=cli"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    assert_eq!(util::text(&out.stdout), "", "build -q prints nothing");
    assert_eq!(util::text(&out.stderr), "", "build -q prints nothing");
    assert_eq!(
        image_id(&env, "cbs-app"),
        first,
        "a cached rebuild gives the same image"
    );
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

#[test]
fn pull_failure_of_a_buildable_service_keeps_its_built_image() {
    require_root!();
    let env = Env::new("cpf");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: 127.0.0.1:1/nowhere/app:1\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM busybox\n        RUN echo fallback > /msg\n    command: [sh, -c, 'cat /msg; sleep 1000']\n",
    );
    // Missing: built, not pulled.
    let out = env.berth(&["up", "-d", "--pull", "always"]);
    let err = util::text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Built") && !err.contains("Pulling"), "{err}");
    env.wait_logs("app", "fallback");
    // Present: `--pull always` tries the registry, fails, and keeps the local image.
    let out = env.berth(&["up", "-d", "--pull", "always"]);
    let err = util::text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Pull failed") && !err.contains("Building"),
        "{err}"
    );
    assert!(!err.contains("Removed"), "{err}");
}

#[test]
fn run_builds_and_uses_the_default_image_name() {
    require_root!();
    let env = Env::new("crb");
    env.write(
        "compose.yaml",
        "services:\n  tool:\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM busybox\n        RUN echo built-for-run > /msg\n    command: [cat, /msg]\n",
    );
    // Nothing built yet: `run` builds `crb-tool` and runs it.
    let out = env.berth(&["run", "--rm", "tool"]);
    let (stdout, err) = (util::text(&out.stdout), util::text(&out.stderr));
    assert!(out.status.success(), "{err}");
    assert!(stdout.contains("built-for-run"), "{stdout}\n{err}");
    let id = image_id(&env, "crb-tool");
    // Built: the second run reuses the image.
    let out = env.ok(&["run", "--rm", "tool", "cat", "/msg"]);
    assert!(out.contains("built-for-run"), "{out}");
    assert_eq!(image_id(&env, "crb-tool"), id);
}

#[test]
fn up_and_run_of_some_services_fetch_only_their_images() {
    require_root!();
    let env = Env::new("csel");
    // `broken`'s image cannot be pulled (nothing listens on port 1), `lib` is built and
    // needed by `app`; `unbuilt` would be built if anything touched it.
    env.write(
        "compose.yaml",
        "services:\n  broken:\n    image: 127.0.0.1:1/nowhere/broken:1\n  unbuilt:\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM busybox\n        RUN echo never > /msg\n  lib:\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM busybox\n        RUN echo lib > /msg\n    command: [sleep, '1000']\n  app:\n    image: busybox\n    depends_on: [lib]\n    command: [sleep, '1000']\n",
    );
    let out = env.berth(&["up", "-d", "app"]);
    let err = util::text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("csel-lib  Built"), "{err}");
    assert!(!err.contains("broken") && !err.contains("unbuilt"), "{err}");
    let out = env.ok(&["run", "--rm", "--no-deps", "app", "echo", "one-off"]);
    assert!(out.contains("one-off"), "{out}");
    let images = env.ok(&["images", "--format", "json"]);
    assert!(!images.contains("csel-unbuilt"), "{images}");
    // Everything: `broken` now fails the command, naming the service.
    let err = env.fails(&["up", "-d"]);
    assert!(err.contains("\"broken\""), "{err}");
}
