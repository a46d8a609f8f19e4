//! `--quiet-pull` (`up`, `create`, `run`), `pull -q`, `--quiet-build` and `build -q` hide what
//! docker compose hides: a pull's layer lines (`Pull complete`) but not the image's own
//! (`Pulling`, `Pulled`); a build's steps and output but not `Built`; and never an error.
//! Root, with Debian's docker-registry on 127.0.0.1 (the image is pushed from a second state
//! root, so its own layer is new to the project's).
#![allow(clippy::print_stderr)]
mod registry_util;
mod util;

use registry_util::Registry;
use util::Env;

/// Runs berth, asserts success, returns stderr (where progress goes).
fn progress_of(env: &Env, args: &[&str]) -> String {
    let out = env.berth(args);
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}",
        util::text(&out.stderr)
    );
    util::text(&out.stderr)
}

#[test]
fn quiet_pull_hides_the_layers_not_the_image() {
    require_root!();
    require_registry!();
    let reg = Registry::start();
    let image = format!("{}/qp/app:1", reg.host);
    {
        let maker = Env::new("qpmaker");
        maker.write(
            "Dockerfile",
            "FROM busybox\nRUN echo layer-of-its-own > /own\n",
        );
        maker.ok(&["build", "-q", "-t", &image, "."]);
        maker.ok(&["push", &image]);
    }
    let env = Env::new("qp");
    env.write(
        "compose.yaml",
        &format!("services:\n  app:\n    image: {image}\n    command: [sleep, '1000']\n"),
    );

    // Without the flag, the layers' steps as docker prints them.
    let err = progress_of(&env, &["up", "-d"]);
    assert!(err.contains(&format!("Image {image}  Pulled")), "{err}");
    assert!(err.contains("Pull complete"), "{err}");
    assert!(err.contains("Already exists"), "busybox's layer: {err}");
    env.ok(&["down", "--rmi", "all"]);

    for args in [
        &["up", "-d", "--quiet-pull"][..],
        &["create", "--quiet-pull"],
        &["pull", "-q"],
        &["run", "--rm", "-T", "--quiet-pull", "app", "true"],
    ] {
        let err = progress_of(&env, args);
        assert!(
            err.contains(&format!("Image {image}  Pulling")),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&format!("Image {image}  Pulled")),
            "{args:?}: {err}"
        );
        assert!(!err.contains("Pull complete"), "{args:?}: {err}");
        assert!(!err.contains("Downloading"), "{args:?}: {err}");
        env.ok(&["down", "--rmi", "all"]);
    }

    // A project pull without -q shows them; `--progress quiet` shows nothing at all.
    let err = progress_of(&env, &["pull"]);
    assert!(err.contains("Pull complete"), "{err}");
    env.ok(&["down", "--rmi", "all"]);
    let err = progress_of(&env, &["--progress", "quiet", "up", "-d"]);
    assert_eq!(err, "", "--progress quiet");
    env.ok(&["down", "--rmi", "all"]);

    // Errors still show: a pull that fails under --quiet-pull.
    env.write(
        "compose.yaml",
        &format!("services:\n  app:\n    image: {}/qp/missing:1\n", reg.host),
    );
    let err = env.fails(&["up", "-d", "--quiet-pull"]);
    assert!(err.contains("qp/missing"), "{err}");
}

#[test]
fn quiet_build_hides_the_steps_not_the_result_nor_errors() {
    require_root!();
    let env = Env::new("qb");
    let compose = |run: &str| {
        format!(
            "services:\n  app:\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM busybox\n        RUN {run}\n    command: [sleep, '1000']\n"
        )
    };
    env.write("compose.yaml", &compose("echo step-says-$((6*7))"));
    let err = progress_of(&env, &["up", "-d", "--build"]);
    assert!(err.contains("step-says-42"), "the step's output: {err}");
    assert!(err.contains("Built"), "{err}");

    env.write("compose.yaml", &compose("echo step-says-$((6*8))"));
    let err = progress_of(&env, &["up", "-d", "--build", "--quiet-build"]);
    assert!(!err.contains("step-says-48"), "{err}");
    assert!(!err.contains("RUN"), "no step lines: {err}");
    assert!(err.contains("Built"), "{err}");
    assert!(
        err.contains("Started") || err.contains("Recreated"),
        "{err}"
    );

    // A failing step is still reported.
    env.write("compose.yaml", &compose("echo failing; exit 3"));
    let err = env.fails(&["up", "-d", "--build", "--quiet-build"]);
    assert!(err.contains("exit code: 3"), "{err}");
}
