//! Attached `up` on a terminal shows docker compose's navigation menu (`w Enable Watch   d
//! Detach`) below the containers' output: `d` detaches (berth exits 0, the containers run on),
//! `w` says watch is not configured, Ctrl-C still stops the project. `--menu=false`,
//! `COMPOSE_MENU=false` and output that is not a terminal show no menu. The terminal is a pty
//! of the test's (`util::terminal`).
#![allow(clippy::print_stderr)]
mod util;
use util::Env;
use util::terminal::{Terminal, have_tools};

const TICKER: &str = "services:\n  ticker:\n    image: busybox\n    command: [sh, -c, 'i=0; while true; do echo tick-$$i; i=$$((i+1)); sleep 0.2; done']\n    stop_grace_period: 1s\n";

fn state(env: &Env) -> String {
    let ps = env.ok(&["ps", "-a", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(ps.lines().next().unwrap_or("{}")).unwrap();
    v["State"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_menu_detaches_and_answers_w_and_ctrl_c_still_stops() {
    require_root!();
    if !have_tools() {
        return;
    }
    let env = Env::new("upmenu");
    env.write("compose.yaml", TICKER);
    let mut t = Terminal::start(&env, &["up"], (24, 120));
    t.expect("tick-2");
    t.expect(" Detach");
    assert!(t.seen().contains(" Enable Watch"), "{}", t.seen());
    // No service has develop.watch: docker compose's answer.
    t.send("w");
    t.expect("watch is not yet configured");
    // The output goes on, the menu stays below it.
    t.expect("tick-8");
    t.send("d");
    let (code, seen) = t.finish();
    assert_eq!(code, Some(0), "{seen}");
    assert!(
        !seen.contains("Gracefully stopping"),
        "detach stops nothing: {seen}"
    );
    assert_eq!(state(&env), "running", "the container runs on");
    let logs = env.ok(&["logs", "--no-log-prefix", "ticker"]);
    let before = logs.lines().count();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let after = env
        .ok(&["logs", "--no-log-prefix", "ticker"])
        .lines()
        .count();
    assert!(after > before, "it is still writing: {before} then {after}");

    // A new attached `up` with the menu: Ctrl-C stops the project gracefully.
    let mut t = Terminal::start(&env, &["up"], (24, 120));
    t.expect(" Detach");
    t.send("\x03");
    t.expect("Gracefully stopping");
    let (code, seen) = t.finish();
    assert_eq!(code, Some(0), "{seen}");
    assert_eq!(state(&env), "exited", "{seen}");
}

#[test]
fn no_menu_when_turned_off_or_not_on_a_terminal() {
    require_root!();
    if !have_tools() {
        return;
    }
    let env = Env::new("upnomenu");
    env.write("compose.yaml", TICKER);
    for (args, vars) in [
        (&["up", "--menu=false"][..], &[][..]),
        (&["up"][..], &[("COMPOSE_MENU", "false")][..]),
        (&["--progress", "plain", "up"][..], &[][..]),
    ] {
        let mut t = Terminal::start_with(&env, args, (24, 120), vars);
        t.expect("tick-3");
        // The menu is drawn right after the first output: none by now.
        assert!(
            !t.seen().contains("Detach"),
            "{args:?} {vars:?}: {}",
            t.seen()
        );
        // Keys are not taken: `d` is only echoed.
        t.send("d");
        t.expect("tick-5");
        t.send("\x03");
        let (code, seen) = t.finish();
        assert_eq!(code, Some(0), "{args:?}: {seen}");
        assert!(!seen.contains("Detach"), "{args:?} {vars:?}: {seen}");
        // A fresh log for the next round.
        env.ok(&["down", "-t", "0"]);
    }

    // Output to a pipe: no menu, even when asked for.
    env.write(
        "compose.yaml",
        "services:\n  once:\n    image: busybox\n    command: [echo, hello]\n",
    );
    let out = env.berth(&["up", "--menu"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let stdout = util::text(&out.stdout);
    assert!(stdout.contains("hello"), "{stdout}");
    assert!(!stdout.contains("Detach"), "{stdout}");
}
