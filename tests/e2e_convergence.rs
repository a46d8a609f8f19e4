//! Convergence of `up` (root only): anonymous volumes kept across a recreate and renewed with
//! `-V`, the `scale` command, networks and volumes whose definition changed, and orphans at
//! `down`.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use util::Env;

const LOOP: &str = r#"[sh, -c, 'trap "exit 0" TERM; while true; do sleep 1 & wait $$!; done']"#;

/// The volumes of the state root, by name.
fn volumes(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.root().join("volumes"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn anonymous_volumes_survive_a_recreate_and_are_renewed_with_v() {
    require_root!();
    let env = Env::new("anon");
    let file = |extra: &str| {
        format!(
            "services:\n  app:\n    image: busybox\n    command: {LOOP}\n    volumes:\n      - /data\n      - keep:/named\n{extra}volumes:\n  keep: {{}}\n"
        )
    };
    env.write("compose.yaml", &file(""));
    env.ok(&["up", "-d"]);
    env.ok(&[
        "exec",
        "app",
        "sh",
        "-c",
        "echo one > /data/f; echo two > /named/f",
    ]);
    let first = volumes(&env);
    assert_eq!(first.len(), 2, "{first:?}");

    // A recreate (forced, or because the configuration changed) hands the anonymous volume to
    // the new container.
    env.ok(&["up", "-d", "--force-recreate"]);
    assert_eq!(env.ok(&["exec", "app", "cat", "/data/f"]), "one\n");
    env.write(
        "compose.yaml",
        &file("    environment:\n      X: changed\n"),
    );
    env.ok(&["up", "-d"]);
    assert_eq!(env.ok(&["exec", "app", "cat", "/data/f"]), "one\n");
    assert_eq!(volumes(&env), first);

    // -V: a new, empty anonymous volume (the old one is removed); named volumes are kept.
    let err = env.fails(&["up", "-d", "-V", "--no-recreate"]);
    assert!(
        err.contains("--no-recreate and --renew-anon-volumes are incompatible"),
        "{err}"
    );
    env.ok(&["up", "-d", "--renew-anon-volumes"]);
    let out = env.berth(&["exec", "app", "cat", "/data/f"]);
    assert!(
        !out.status.success(),
        "the renewed volume still has the old data"
    );
    assert_eq!(env.ok(&["exec", "app", "cat", "/named/f"]), "two\n");
    let renewed = volumes(&env);
    assert_eq!(renewed.len(), 2, "{renewed:?}");
    assert_ne!(renewed, first);

    // A one-off with --rm takes its anonymous volume with it.
    env.ok(&["run", "--rm", "app", "sh", "-c", "test ! -e /data/f"]);
    assert_eq!(volumes(&env), renewed);

    // down keeps volumes; down -v removes the anonymous one too.
    env.ok(&["down", "-t", "0"]);
    assert_eq!(volumes(&env), renewed);
    env.ok(&["down", "-v"]);
    assert_eq!(volumes(&env), Vec::<String>::new());
}
