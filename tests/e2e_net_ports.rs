//! Every port syntax, end to end (root only): loopback-only, random, ranges, a host range shared
//! by replicas, UDP reservation, `berth port`, and the "already allocated" error.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::time::Duration;
use util::{Env, free_port, http_get};

const SRV: &str = r#"
x-srv: &srv
  image: busybox
  command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /w; echo $$N > /w/index.html; httpd -p 8080 -h /w; httpd -f -p 8081 -h /w & wait"]
"#;

fn get(addr: &str) -> Option<String> {
    http_get(addr, Duration::from_secs(3)).map(|s| s.trim().to_string())
}

#[test]
fn every_port_form_is_reachable_where_it_should_be() {
    require_root!();
    let env = Env::new("netports");
    let (lo, range, udp, shared) = (free_port(), free_port(), free_port(), free_port());
    let v6 = free_port();
    let compose = format!(
        r#"{SRV}
services:
  web:
    <<: *srv
    environment: {{N: web}}
    ports:
      - "127.0.0.1:{lo}:8080"
      - "{range}-{range_end}:8080-8081"
      - "{udp}:9999/udp"
      - "[::1]:{v6}:8081"
  rnd: {{<<: *srv, environment: {{N: rnd}}, ports: ["8080"]}}
  r1: {{<<: *srv, environment: {{N: r1}}, ports: ["{shared}-{shared_end}:8080"]}}
  r2: {{<<: *srv, environment: {{N: r2}}, ports: ["{shared}-{shared_end}:8080"]}}
"#,
        range_end = range + 1,
        shared_end = shared + 1,
    );
    env.write("compose.yaml", &compose);
    env.ok(&["up", "-d"]);

    // Loopback only.
    assert_eq!(get(&format!("127.0.0.1:{lo}")).as_deref(), Some("web"));
    assert_eq!(
        env.ok(&["port", "web", "8080"]).trim(),
        format!("127.0.0.1:{lo}")
    );
    let host = util::host_address();
    if let Some(ip) = &host {
        assert_eq!(get(&format!("{ip}:{lo}")), None, "127.0.0.1 only");
    }

    // A container range onto a host range.
    assert_eq!(get(&format!("127.0.0.1:{range}")).as_deref(), Some("web"));
    assert_eq!(
        get(&format!("127.0.0.1:{}", range + 1)).as_deref(),
        Some("web")
    );
    assert_eq!(
        env.ok(&["port", "web", "8081"]).trim(),
        format!("0.0.0.0:{}", range + 1)
    );
    if let Some(ip) = &host {
        assert_eq!(get(&format!("{ip}:{range}")).as_deref(), Some("web"));
    }

    // UDP: reserved on the host, reported by `berth port`.
    assert_eq!(
        env.ok(&["port", "--protocol", "udp", "web", "9999"]).trim(),
        format!("0.0.0.0:{udp}")
    );
    assert_eq!(
        env.ok(&["port", "web", "9999/udp"]).trim(),
        format!("0.0.0.0:{udp}")
    );
    assert!(std::net::UdpSocket::bind(("0.0.0.0", udp)).is_err(), "held");

    // IPv6 loopback, through the shim's proxy: ports on every address, not 127.0.0.1-only ones.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        assert_eq!(get(&format!("[::1]:{range}")).as_deref(), Some("web"));
        assert_eq!(get(&format!("[::1]:{lo}")), None);
        // `[::1]:PORT:8081`: IPv6 loopback only, no IPv4 at all.
        assert_eq!(get(&format!("[::1]:{v6}")).as_deref(), Some("web"));
        assert_eq!(get(&format!("127.0.0.1:{v6}")), None);
        assert_eq!(
            env.ok(&["port", "web", "8081"]).trim(),
            format!("0.0.0.0:{}", range + 1),
            "the first mapping of 8081"
        );
    }

    // A random host port.
    let rnd = env.ok(&["port", "rnd", "8080"]);
    let rnd_port: u16 = rnd
        .trim()
        .strip_prefix("0.0.0.0:")
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(rnd_port, 0);
    assert_eq!(
        get(&format!("127.0.0.1:{rnd_port}")).as_deref(),
        Some("rnd")
    );

    // Two replicas share a host range: each gets its own port of it.
    let p1 = env.ok(&["port", "r1", "8080"]).trim().to_string();
    let p2 = env.ok(&["port", "r2", "8080"]).trim().to_string();
    let mut got = vec![p1.clone(), p2.clone()];
    got.sort();
    assert_eq!(
        got,
        [
            format!("0.0.0.0:{shared}"),
            format!("0.0.0.0:{}", shared + 1)
        ]
    );
    let port_of = |s: &str| s.rsplit(':').next().unwrap().to_string();
    assert_eq!(
        get(&format!("127.0.0.1:{}", port_of(&p1))).as_deref(),
        Some("r1")
    );
    assert_eq!(
        get(&format!("127.0.0.1:{}", port_of(&p2))).as_deref(),
        Some("r2")
    );

    // Hairpin: a container reaches another through the host's address and published port.
    if let Some(ip) = &host {
        let url = format!("http://{ip}:{range}/");
        let out = env.ok(&["exec", "rnd", "timeout", "3", "wget", "-qO-", &url]);
        assert_eq!(out.trim(), "web");
    }

    // Errors: unknown port, and a port someone else holds, naming service and port.
    let err = env.fails(&["port", "web", "1234"]);
    assert!(err.contains("no port 1234/tcp"), "{err}");
    let taken = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let busy = taken.local_addr().unwrap().port();
    env.write(
        "compose.yaml",
        &format!("{compose}  clash: {{<<: *srv, environment: {{N: c}}, ports: [\"{busy}:80\"]}}\n"),
    );
    let err = env.fails(&["up", "-d"]);
    assert!(err.contains("port is already allocated"), "{err}");
    assert!(
        err.contains("service \"clash\"") && err.contains(&busy.to_string()),
        "{err}"
    );
}
