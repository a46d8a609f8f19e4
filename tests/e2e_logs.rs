//! `berth logs` end to end (root only): filters, prefixes, rotation, following across restarts.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::time::{Duration, Instant};
use util::Env;

fn wait_exited(env: &Env, service: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = env.ok(&["ps", "-a", "--format", "json"]);
        if out.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["Service"] == service && v["State"] == "exited")
        }) {
            return;
        }
        assert!(Instant::now() < deadline, "{service} never exited:\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn filters_prefixes_and_rotation() {
    require_root!();
    let env = Env::new("lg");
    env.write(
        "compose.yaml",
        "services:\n  chatty:\n    image: busybox\n    command: [sh, -c, 'i=0; while [ $$i -lt 400 ]; do echo line $$i; i=$$((i+1)); done; echo oops >&2']\n    logging:\n      options:\n        max-size: 4k\n        max-file: \"3\"\n",
    );
    env.ok(&["up", "-d"]);
    wait_exited(&env, "chatty");
    // Rotation kept at most three files of at most 4 KiB.
    let dir = std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("container.log"))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(f.metadata().unwrap().len() <= 4096);
    }
    // The oldest lines are gone, the rest read in order across the files.
    let all = env.ok(&["logs", "--no-log-prefix"]);
    let lines: Vec<&str> = all.lines().collect();
    assert!(lines.len() < 401 && lines.len() > 50, "{}", lines.len());
    assert_eq!(lines.last(), Some(&"oops"));
    let nums: Vec<u32> = lines[..lines.len() - 1]
        .iter()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(*nums.last().unwrap(), 399);

    let tail = env.ok(&["logs", "--tail", "2"]);
    let tail: Vec<&str> = tail.lines().collect();
    assert_eq!(tail.len(), 2);
    assert!(tail[0].starts_with("chatty-1  | line 399"), "{tail:?}");
    assert!(tail[1].ends_with("| oops"), "{tail:?}");
    // Not a terminal: no colour codes.
    assert!(!tail[0].contains('\u{1b}'));

    let ts = env.ok(&["logs", "-t", "--no-log-prefix", "-n", "1"]);
    let (time, text) = ts.trim_end().split_once(' ').unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{ts}");
    assert_eq!(text, "oops");

    assert_eq!(env.ok(&["logs", "--since", "2099-01-01T00:00:00Z"]), "");
    assert_eq!(env.ok(&["logs", "--until", "1h"]), "");
    assert_eq!(
        env.ok(&["logs", "--since", "1h", "-n", "1", "--no-log-prefix"]),
        "oops\n"
    );
    assert!(
        env.fails(&["logs", "--since", "soon"])
            .contains("invalid time")
    );
    env.ok(&["down"]);
}

#[test]
fn follow_continues_across_restarts_and_ends_with_the_container() {
    require_root!();
    let env = Env::new("lf");
    env.write(
        "compose.yaml",
        "services:\n  flaky:\n    image: busybox\n    restart: on-failure:2\n    command: [sh, -c, 'echo run; sleep 0.3; exit 3']\n",
    );
    env.ok(&["up", "-d"]);
    let started = Instant::now();
    let out = env.ok(&["logs", "-f", "--no-log-prefix"]);
    // Three runs (the first and two restarts), and `-f` returned once the last one exited.
    assert_eq!(out, "run\nrun\nrun\n");
    assert!(started.elapsed() < Duration::from_secs(15));
    env.ok(&["down"]);
}
