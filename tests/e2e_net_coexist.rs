//! Coexistence with another firewall's forward drop policy (root only), as Docker leaves it
//! (`iptables -P FORWARD DROP`): berth's bridges still forward, between containers and to
//! published ports, because berth puts accepts for its bridges into every foreign forward base
//! chain whose policy is drop.
//!
//! The test makes such a chain in a table of its own (`inet coexist_<random>`, priority 10)
//! that drops only what involves this test's two bridges (named through
//! `com.docker.network.bridge.name`), so nothing else on the host is affected while it runs;
//! a guard deletes the table however the test ends. The host's own firewall is never touched.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::process::Command;
use std::time::{Duration, Instant};
use util::{Env, free_port, http_get, text};

fn nft(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

/// A forward base chain with policy drop, removed on drop (also when the test panics).
struct DropTable {
    table: String,
}

impl DropTable {
    /// Drops forwarded packets from or to interfaces named `prefix*`; accepts everything else.
    fn new(prefix: &str) -> DropTable {
        let table = format!("coexist_{prefix}");
        let guard = DropTable { table };
        let t = &guard.table;
        let script = format!(
            "add table inet {t}\n\
             add chain inet {t} forward {{ type filter hook forward priority 10; policy drop; }}\n\
             add rule inet {t} forward iifname != \"{prefix}*\" oifname != \"{prefix}*\" accept\n"
        );
        let (ok, out) = nft(&["-f", "-"], Some(&script));
        assert!(ok, "{out}");
        guard
    }

    fn listing(&self) -> String {
        nft(&["-a", "list", "table", "inet", &self.table], None).1
    }

    /// Deletes the rules berth put into our chain (as a firewall restart would).
    fn forget_berth_rules(&self) {
        let handles: Vec<String> = self
            .listing()
            .lines()
            .filter(|l| l.contains("comment \"berth:"))
            .filter_map(|l| Some(l.rsplit_once("# handle ")?.1.trim().to_string()))
            .collect();
        assert!(
            !handles.is_empty(),
            "berth added no accepts:\n{}",
            self.listing()
        );
        for h in handles {
            let (ok, out) = nft(
                &[
                    "delete",
                    "rule",
                    "inet",
                    &self.table,
                    "forward",
                    "handle",
                    &h,
                ],
                None,
            );
            assert!(ok, "{out}");
        }
    }
}

impl Drop for DropTable {
    fn drop(&mut self) {
        let (ok, out) = nft(&["delete", "table", "inet", &self.table], None);
        if !ok {
            eprintln!("could not delete nft table inet {}: {out}", self.table);
        }
    }
}

/// `wget` of `url` (shell words allowed) from inside `service`'s container; retried until
/// `wait` is over.
fn wget(env: &Env, service: &str, url: &str, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    // busybox-static's `wget -T` crashes: `timeout` bounds it instead.
    let script = format!("timeout 3 wget -q -O - {url}");
    loop {
        let out = env.berth(&["exec", "-T", service, "sh", "-c", &script]);
        if out.status.success() {
            return Some(text(&out.stdout).trim().to_string());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_foreign_forward_drop_policy_does_not_break_our_bridges() {
    require_root!();
    let env = Env::new("netcoexist");
    let prefix = format!("bfd{:08x}", rand::random::<u32>());
    let port = free_port();
    env.write(
        "compose.yaml",
        &format!(
            r#"services:
  web:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /w; echo web > /w/index.html; httpd -f -p 8080 -h /w & wait"]
    ports: ["{port}:8080"]
    networks: [front]
  mate:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]
    networks: [front]
  probe:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]
    networks: [back]
networks:
  front:
    driver_opts: {{com.docker.network.bridge.name: {prefix}a}}
  back:
    driver_opts: {{com.docker.network.bridge.name: {prefix}b}}
"#
        ),
    );
    let drop_table = DropTable::new(&prefix);
    env.ok(&["up", "-d"]);

    // The probe is on the other network: it reaches web through the published port on its own
    // gateway, DNAT then forwarding from one bridge to the other.
    let via_port = format!("http://$(ip route | awk '/default/ {{print $3}}'):{port}/");
    let cross = |wait| wget(&env, "probe", &via_port, wait);
    let same = |wait| wget(&env, "mate", "http://web:8080/", wait);
    assert_eq!(
        same(Duration::from_secs(10)).as_deref(),
        Some("web"),
        "same network"
    );
    assert_eq!(
        cross(Duration::from_secs(10)).as_deref(),
        Some("web"),
        "published port from another network"
    );
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), Duration::from_secs(5))
            .map(|s| s.trim().to_string())
            .as_deref(),
        Some("web")
    );
    let listing = drop_table.listing();
    for b in ["a", "b"] {
        assert_eq!(
            listing
                .matches(&format!("comment \"berth:{prefix}{b}\""))
                .count(),
            2,
            "{listing}"
        );
    }

    // Without berth's accepts the chain really drops our traffic…
    drop_table.forget_berth_rules();
    assert_eq!(same(Duration::ZERO), None, "the drop chain bites");
    assert_eq!(cross(Duration::ZERO), None, "the drop chain bites");
    // …and the next operation puts them back.
    env.ok(&["up", "-d"]);
    assert_eq!(same(Duration::from_secs(10)).as_deref(), Some("web"));
    assert_eq!(cross(Duration::from_secs(10)).as_deref(), Some("web"));

    // `down` takes its rules out of the foreign chain and leaves the chain itself alone.
    env.ok(&["down", "-t", "0"]);
    let listing = drop_table.listing();
    // (Only our bridges' rules: berth runs of other state roots on this host may add theirs.)
    assert!(!listing.contains(&format!("berth:{prefix}")), "{listing}");
    assert!(listing.contains("policy drop"), "{listing}");
    assert_eq!(util::leftovers(env.root(), &[]), Vec::<String>::new());
}
