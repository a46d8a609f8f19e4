//! IPv6 networks (root only): `enable_ipv6` with a given subnet and with none (a ULA /64 is
//! picked, as Docker does), a static `ipv6_address`, containers reaching each other over
//! IPv6, AAAA answers from the resolver, a published port on `[::1]`, and a clear error for an
//! IPv6 subnet without `enable_ipv6`. Skips when the kernel has IPv6 off.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::time::{Duration, Instant};
use util::{Env, free_port, http_get, text};

fn ipv6_missing() -> Option<String> {
    match std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6") {
        Err(_) => Some("the kernel has no IPv6".into()),
        Ok(v) if v.trim() == "1" => {
            Some("IPv6 is disabled (net.ipv6.conf.all.disable_ipv6)".into())
        }
        Ok(_) => None,
    }
}

/// Runs `script` in `service`'s container until it succeeds or `wait` is over.
fn exec_until(env: &Env, service: &str, script: &str, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        let out = env.berth(&["exec", "-T", service, "sh", "-c", script]);
        if out.status.success() {
            return Some(text(&out.stdout));
        }
        if Instant::now() > deadline {
            eprintln!("{script}: {}", text(&out.stderr));
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The global IPv6 address of `service` on `ifname`.
fn addr6(env: &Env, service: &str, ifname: &str) -> String {
    let out = env.ok(&[
        "exec", "-T", service, "ip", "-6", "-o", "addr", "show", ifname,
    ]);
    out.lines()
        .filter(|l| l.contains("scope global"))
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|w| *w == "inet6")?;
            Some(f.get(i + 1)?.split('/').next()?.to_string())
        })
        .unwrap_or_else(|| panic!("no global IPv6 address on {service} {ifname}:\n{out}"))
}

#[test]
fn ipv6_networks_addresses_names_and_ports() {
    require_root!();
    if let Some(reason) = ipv6_missing() {
        eprintln!("SKIPPED {}: {reason}", module_path!());
        return;
    }
    let env = Env::new("netipv6");
    let port = free_port();
    let r: [u16; 3] = rand::random();
    let prefix = format!("fd7e:{:x}:{:x}:{:x}", r[0], r[1], r[2]);
    let prefix2 = format!("fd7f:{:x}:{:x}:{:x}", r[0], r[1], r[2]);
    env.write(
        "compose.yaml",
        &format!(
            r#"services:
  web:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /w; echo web > /w/index.html; httpd -f -p 8080 -h /w & wait"]
    ports: ["{port}:8080"]
    networks:
      auto: {{}}
      fixed: {{ipv6_address: "{prefix}::80"}}
  client:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]
    networks: [auto, fixed]
networks:
  auto:
    enable_ipv6: true
  fixed:
    enable_ipv6: true
    ipam:
      config:
        - subnet: "{prefix}::/64"
"#
        ),
    );
    env.ok(&["up", "-d"]);

    // Addresses: the static one, and one from a ULA /64 on the network without a subnet.
    assert_eq!(addr6(&env, "web", "eth1"), format!("{prefix}::80"));
    let auto = addr6(&env, "web", "eth0");
    assert!(auto.starts_with("fd"), "{auto}");
    let client_auto = addr6(&env, "client", "eth0");
    assert_eq!(
        auto.rsplit_once(':')
            .unwrap()
            .0
            .split(':')
            .take(4)
            .collect::<Vec<_>>(),
        client_auto
            .rsplit_once(':')
            .unwrap()
            .0
            .split(':')
            .take(4)
            .collect::<Vec<_>>(),
        "one /64 per network"
    );

    // Reachable over IPv6 on both networks, by address.
    for target in [format!("{prefix}::80"), auto.clone()] {
        let got = exec_until(
            &env,
            "client",
            &format!("timeout 5 wget -q -O - 'http://[{target}]:8080/'"),
            Duration::from_secs(10),
        );
        assert_eq!(got.as_deref().map(str::trim), Some("web"), "[{target}]");
    }

    // The resolver answers AAAA with the peer's addresses on the shared networks.
    let out = env.ok(&[
        "exec",
        "-T",
        "client",
        "nslookup",
        "-type=AAAA",
        "web",
        "127.0.0.11",
    ]);
    assert!(out.contains(&format!("{prefix}::80")), "{out}");
    assert!(out.contains(&auto), "{out}");
    let out = env.ok(&[
        "exec",
        "-T",
        "client",
        "nslookup",
        "-type=A",
        "web",
        "127.0.0.11",
    ]);
    assert!(!out.contains(&prefix), "{out}");

    // The published port, on IPv4 and IPv6 loopback.
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        assert_eq!(
            http_get(&addr, Duration::from_secs(5))
                .map(|s| s.trim().to_string())
                .as_deref(),
            Some("web"),
            "{addr}"
        );
    }

    // `network create --ipv6`, with an IPv6 subnet, shown by `network inspect`; `connect
    // --ip6` puts a running container on it with the address asked for.
    let net = format!("{}_v6", env.project);
    env.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        &format!("{prefix2}::/64"),
        &net,
    ]);
    let inspect = env.ok(&["network", "inspect", &net]);
    assert!(inspect.contains("\"EnableIPv6\": true"), "{inspect}");
    assert!(
        inspect.contains(&format!("\"{prefix2}::/64\"")),
        "{inspect}"
    );
    env.ok(&[
        "network",
        "connect",
        "--ip6",
        &format!("{prefix2}::9"),
        &net,
        "netipv6-client-1",
    ]);
    assert_eq!(addr6(&env, "client", "eth2"), format!("{prefix2}::9"));
    let err = env.fails(&[
        "network",
        "connect",
        "--ip6",
        &format!("{prefix2}::9"),
        &net,
        "netipv6-web-1",
    ]);
    assert!(err.contains("already in use"), "{err}");
    env.ok(&["network", "disconnect", &net, "netipv6-client-1"]);
    env.ok(&["network", "rm", &net]);

    env.ok(&["down", "-t", "0"]);
    assert_eq!(util::leftovers(env.root(), &[]), Vec::<String>::new());

    // An IPv6 subnet without enable_ipv6 is refused with a hint.
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  a: {{image: busybox, networks: [n]}}\nnetworks:\n  n:\n    ipam: {{config: [{{subnet: \"{prefix}::/64\"}}]}}\n"
        ),
    );
    let err = env.fails(&["up", "-d"]);
    assert!(err.contains("enable_ipv6: true"), "{err}");
    // Two networks on one IPv6 subnet are refused.
    env.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        &format!("{prefix}::/64"),
        &net,
    ]);
    let err = env.fails(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        &format!("{prefix}::/80"),
        "x6",
    ]);
    assert!(err.contains("overlaps"), "{err}");
    env.ok(&["network", "rm", &net]);
}
