//! Attached `up` (root only): which services' output is shown (`up SERVICE`, `--attach`,
//! `--no-attach`, `--attach-dependencies`, `attach: false`), when `up` returns, and
//! `--timestamps`.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use util::Env;

const LOOP: &str =
    r#"[sh, -c, 'echo $$0-out; trap "exit 0" TERM; while true; do sleep 1 & wait $$!; done']"#;

fn env() -> Env {
    let env = Env::new("at");
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  db:\n    image: busybox\n    command: {LOOP}\n  quiet:\n    image: busybox\n    attach: false\n    command: [sh, -c, 'echo quiet-out; sleep 1']\n  web:\n    image: busybox\n    command: [sh, -c, 'echo web-out; sleep 1']\n    depends_on: [db]\n"
        ).replace("$$0-out", "db-out"),
    );
    env
}

/// Runs an attached `up` that must return by itself; returns its stdout.
fn up(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["up"];
    all.extend_from_slice(args);
    let out = env.berth(&all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        util::text(&out.stdout),
        util::text(&out.stderr)
    );
    util::text(&out.stdout)
}

#[test]
fn up_service_attaches_to_it_alone_and_returns_when_it_exits() {
    require_root!();
    let env = env();
    // docker compose: `up web` shows web only (its dependency runs, silently) and returns once
    // web has exited, leaving the dependency running.
    let out = up(&env, &["web"]);
    // docker compose's names: without the project, as `Attaching to` lists them first.
    assert!(out.starts_with("Attaching to web-1\n"), "{out}");
    assert!(out.contains("web-1  | web-out"), "{out}");
    assert!(out.contains("web-1 exited with code 0"), "{out}");
    assert!(!out.contains("db-out") && !out.contains("db-1"), "{out}");
    let running = env.ok(&["ps", "--status", "running", "--services"]);
    assert_eq!(running.trim(), "db");

    // --attach-dependencies adds the dependencies' output.
    let out = up(&env, &["--attach-dependencies", "web"]);
    assert!(out.contains("db-1   | db-out"), "{out}");
    assert!(out.contains("web-1  | web-out"), "{out}");
    env.ok(&["down", "-t", "0"]);
}

#[test]
fn attach_no_attach_and_timestamps() {
    require_root!();
    let env = env();
    // Without services: every service but those saying `attach: false`, minus --no-attach; up
    // returns once the attached ones have exited.
    let out = up(&env, &["--no-attach", "db", "--timestamps"]);
    assert!(
        !out.contains("db-out") && !out.contains("quiet-out"),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.ends_with("web-out"))
        .unwrap_or_else(|| panic!("{out}"));
    // `web-1  | 2024-05-01T10:00:00.123456789Z web-out`
    let stamp = line
        .strip_prefix("web-1  | ")
        .and_then(|l| l.strip_suffix(" web-out"))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        stamp.len() == 30
            && stamp.ends_with('Z')
            && stamp.as_bytes()[19] == b'.'
            && chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{line}"
    );
    // --attach names the services shown, even one saying `attach: false`.
    env.ok(&["down", "-t", "0"]);
    let out = up(
        &env,
        &["--attach", "quiet", "--attach", "web", "--no-log-prefix"],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&"quiet-out") && lines.contains(&"web-out"),
        "{out}"
    );
    assert!(!out.contains("db-out"), "{out}");

    // Errors, as docker compose words them.
    let err = env.fails(&["up", "--attach", "nope"]);
    assert!(
        err.contains("cannot attach to services not included in up: nope"),
        "{err}"
    );
    let err = env.fails(&["up", "--attach", "quiet", "web"]);
    assert!(
        err.contains("cannot attach to services not included in up: quiet"),
        "{err}"
    );
    let err = env.fails(&["up", "--attach", "web", "--attach-dependencies"]);
    assert!(
        err.contains("cannot combine --attach and --attach-dependencies"),
        "{err}"
    );
    let err = env.fails(&["up", "-d", "--attach", "web"]);
    assert!(err.contains("cannot be combined"), "{err}");
    // Accepted for compatibility.
    env.ok(&["up", "-d", "--quiet-pull", "--menu=false", "-y", "db"]);
    env.ok(&["down", "-t", "0"]);
    // --no-start: created, not started, and up returns at once.
    env.ok(&["up", "--no-start", "web"]);
    let ps = env.ok(&["ps", "-a", "--format", "json"]);
    let states: Vec<String> = ps
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| format!("{} {}", v["Service"], v["State"]))
        .collect();
    assert_eq!(
        states,
        ["\"db\" \"created\"", "\"web\" \"created\""],
        "{ps}"
    );
    env.ok(&["down", "-t", "0"]);
}
