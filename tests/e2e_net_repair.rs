//! Robustness (root only): the firewall table deleted behind berth's back is rebuilt by the next
//! `up`, and a `berth up` killed with SIGKILL at any point is finished by the next `up` and
//! cleaned by `down`. Only this test's own nft table is touched, never the whole ruleset.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::process::Command;
use std::time::Duration;
use util::{Env, free_port, http_get, text};

fn compose(port: u16) -> String {
    format!(
        r#"services:
  web:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /w; echo web > /w/index.html; httpd -f -p 8080 -h /w & wait"]
    ports: ["{port}:8080"]
  other:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]
    networks: [default, second]
networks:
  second: {{}}
"#
    )
}

fn delete_our_table(env: &Env) {
    let table = format!("berth_{}", util::berth_tag(env.root()));
    let out = Command::new("nft")
        .args(["delete", "table", "inet", &table])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn flushed_rules_and_killed_up_are_repaired() {
    require_root!();
    let env = Env::new("netrepair");
    let port = free_port();
    let x = rand::random::<u8>() & 0xfe;
    let pool = format!("10.216.{x}.0/24,10.216.{}.0/24", x + 1);
    let berth = |args: &[&str]| {
        Command::new(util::BERTH)
            .args(args)
            .current_dir(&env.dir)
            .env("BERTH_ROOT", env.root())
            .env("BERTH_SUBNET_POOL", &pool)
            .output()
            .unwrap()
    };
    env.write("compose.yaml", &compose(port));
    let up = berth(&["up", "-d"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let addr = format!("127.0.0.1:{port}");
    assert!(http_get(&addr, Duration::from_secs(5)).is_some());

    // The table goes; the next `up` (nothing to recreate) brings it and the port back.
    delete_our_table(&env);
    assert!(http_get(&addr, Duration::from_millis(300)).is_none());
    let up = berth(&["up", "-d"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert!(
        http_get(&addr, Duration::from_secs(5)).is_some(),
        "port re-published"
    );

    // `down` with the table gone still removes everything.
    delete_our_table(&env);
    let down = berth(&["down", "-t", "0"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert_eq!(util::leftovers(env.root(), &[]), Vec::<String>::new());

    // SIGKILL during `up`, at several points: the next `up` finishes, `down` cleans.
    for delay_ms in [30, 120, 300, 600] {
        let mut child = Command::new(util::BERTH)
            .args(["up", "-d"])
            .current_dir(&env.dir)
            .env("BERTH_ROOT", env.root())
            .env("BERTH_SUBNET_POOL", &pool)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let up = berth(&["up", "-d"]);
        assert!(
            up.status.success(),
            "after a kill at {delay_ms} ms: {}",
            text(&up.stderr)
        );
        assert!(
            http_get(&addr, Duration::from_secs(5)).is_some(),
            "after a kill at {delay_ms} ms"
        );
        let mut links = util::bridges(env.root());
        links.extend(util::veths(env.root()));
        assert_eq!(links.len(), 5, "two bridges, three veths");
        let down = berth(&["down", "-t", "0"]);
        assert!(down.status.success(), "{}", text(&down.stderr));
        assert_eq!(util::leftovers(env.root(), &links), Vec::<String>::new());
    }
}
