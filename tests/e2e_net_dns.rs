//! Several networks and the embedded resolver at 127.0.0.11, end to end (root only).
//!
//! Two networks with a service on each and one on both, two services sharing an alias (the
//! replicas of a scaled service), an internal network. Forwarded names go to a fake upstream
//! resolver this test runs on a random 127.x address (the test's resolv.conf source points
//! there): nothing leaves the machine.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType, rdata::A};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, Output};
use util::{Env, text};

const COMPOSE: &str = r#"
x-srv: &srv
  image: busybox
  command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /w; echo $$N > /w/index.html; httpd -f -p 8080 -h /w & wait"]
services:
  a: {<<: *srv, environment: {N: a}, networks: [front]}
  b: {<<: *srv, environment: {N: b}, networks: [back]}
  c:
    <<: *srv
    environment: {N: c}
    networks:
      front: {}
      back: {aliases: [both]}
  r1: {<<: *srv, environment: {N: r1}, networks: {front: {aliases: [rep]}}}
  r2: {<<: *srv, environment: {N: r2}, networks: {front: {aliases: [rep]}}}
  i: {<<: *srv, environment: {N: i}, networks: [sealed], dns_search: [corp.test], dns_opt: ["timeout:2"]}
networks:
  front: {}
  back: {}
  sealed: {internal: true}
"#;

/// A resolver on `addr:53` answering `example.test` with 192.0.2.77 and NXDOMAIN otherwise.
fn fake_upstream(addr: Ipv4Addr) -> UdpSocket {
    let sock = UdpSocket::bind((addr, 53)).expect("bind the fake upstream");
    let s = sock.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.queries = q.queries.clone();
            let query = &q.queries[0];
            if query.name().to_ascii().trim_end_matches('.') == "example.test" {
                if query.query_type() == RecordType::A {
                    r.add_answer(Record::from_rdata(
                        query.name().clone(),
                        60,
                        RData::A(A(Ipv4Addr::new(192, 0, 2, 77))),
                    ));
                }
            } else {
                r.metadata.response_code = ResponseCode::NXDomain;
            }
            let _ = s.send_to(&r.to_vec().unwrap(), from);
        }
    });
    sock
}

struct Net<'a> {
    env: &'a Env,
    resolv: std::path::PathBuf,
    pool: String,
}

impl Net<'_> {
    fn berth(&self, args: &[&str]) -> Output {
        Command::new(util::BERTH)
            .args(args)
            .current_dir(&self.env.dir)
            .env("BERTH_ROOT", self.env.root())
            .env("BERTH_SUBNET_POOL", &self.pool)
            .env("BERTH_RESOLV_CONF", &self.resolv)
            .env_remove("COMPOSE_PROJECT_NAME")
            .output()
            .unwrap()
    }

    fn exec(&self, service: &str, cmd: &[&str]) -> (bool, String) {
        let mut args = vec!["exec", "-T", service];
        args.extend(cmd);
        let out = self.berth(&args);
        (out.status.success(), text(&out.stdout) + &text(&out.stderr))
    }

    /// The IPv4 addresses `name` resolves to from `service`, through busybox nslookup.
    fn lookup(&self, service: &str, name: &str) -> Vec<Ipv4Addr> {
        let (_, out) = self.exec(service, &["nslookup", "-type=a", name]);
        out.lines()
            .filter_map(|l| l.strip_prefix("Address:"))
            .filter_map(|a| a.trim().parse().ok())
            .collect()
    }

    fn get(&self, service: &str, host: &str) -> Option<String> {
        let url = format!("http://{host}:8080/");
        let (ok, out) = self.exec(service, &["timeout", "3", "wget", "-qO-", &url]);
        if !ok {
            eprintln!("wget {url} from {service}: {out}");
        }
        ok.then(|| out.trim().to_string())
    }

    /// The address of the container of `service` on network `net` (`<project>_<net>`).
    fn ip(&self, service: &str, net: &str) -> Ipv4Addr {
        let dir = self.env.root().join("containers");
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let rec: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path().join("container.json")).unwrap())
                    .unwrap();
            if rec["labels"]["com.docker.compose.service"] == service {
                for n in rec["networks"].as_array().unwrap() {
                    if n["network"] == format!("{}_{net}", self.env.project) {
                        return n["ip"].as_str().unwrap().parse().unwrap();
                    }
                }
            }
        }
        panic!("no address for {service} on {net}")
    }
}

#[test]
fn networks_isolate_and_names_resolve_per_network() {
    require_root!();
    let env = Env::new("netdns");
    let upstream_ip = Ipv4Addr::new(127, 213, rand::random::<u8>(), rand::random::<u8>() | 1);
    let _upstream = fake_upstream(upstream_ip);
    let resolv = env.dir.join("host-resolv.conf");
    std::fs::write(&resolv, format!("nameserver {upstream_ip}\n")).unwrap();
    let x = rand::random::<u8>() & 0xfc;
    let pool = (0..4)
        .map(|i| format!("10.214.{}.0/24", x + i))
        .collect::<Vec<_>>()
        .join(",");
    let net = Net {
        env: &env,
        resolv,
        pool,
    };
    env.write("compose.yaml", COMPOSE);
    let up = net.berth(&["up", "-d"]);
    assert!(up.status.success(), "{}", text(&up.stderr));

    let (_, conf) = net.exec("a", &["cat", "/etc/resolv.conf"]);
    assert_eq!(conf, "nameserver 127.0.0.11\noptions ndots:0\n");
    let (_, conf) = net.exec("i", &["cat", "/etc/resolv.conf"]);
    assert_eq!(
        conf,
        "nameserver 127.0.0.11\nsearch corp.test\noptions ndots:0 timeout:2\n"
    );

    // By name, scoped to the networks the asker shares.
    assert_eq!(net.lookup("a", "c"), [net.ip("c", "front")]);
    assert_eq!(net.lookup("b", "c"), [net.ip("c", "back")]);
    assert_eq!(net.lookup("b", "both"), [net.ip("c", "back")]);
    assert_eq!(net.lookup("a", "netdns-c-1"), [net.ip("c", "front")]);
    assert!(net.lookup("a", "b").is_empty(), "b is not on front");
    assert!(
        net.lookup("a", "both").is_empty(),
        "the alias is on back only"
    );
    assert!(net.lookup("b", "a").is_empty());
    let mut reps = net.lookup("a", "rep");
    reps.sort();
    let mut want = vec![net.ip("r1", "front"), net.ip("r2", "front")];
    want.sort();
    assert_eq!(reps, want, "every replica");

    // Forwarded to the (fake) upstream, except from an internal network.
    assert_eq!(
        net.lookup("a", "example.test"),
        [Ipv4Addr::new(192, 0, 2, 77)]
    );
    assert!(net.lookup("i", "example.test").is_empty());

    // Who reaches whom.
    assert_eq!(net.get("a", "c").as_deref(), Some("c"));
    assert_eq!(net.get("b", "c").as_deref(), Some("c"));
    assert_eq!(net.get("c", "a").as_deref(), Some("a"));
    assert_eq!(net.get("c", "b").as_deref(), Some("b"));
    let b_ip = net.ip("b", "back").to_string();
    assert_eq!(
        net.get("a", &b_ip),
        None,
        "front cannot reach back by address"
    );
    let a_ip = net.ip("a", "front").to_string();
    assert_eq!(
        net.get("b", &a_ip),
        None,
        "back cannot reach front by address"
    );
    let got = net.get("a", "rep").unwrap();
    assert!(got == "r1" || got == "r2", "{got}");

    // The internal network has no route out.
    let (_, routes) = net.exec("i", &["ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    let gw = net.exec("a", &["ip", "route"]).1;
    assert!(gw.contains("default"), "{gw}");

    // connect and disconnect a running container: names and reachability follow at once.
    let ok = |args: &[&str]| {
        let out = net.berth(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    ok(&[
        "network",
        "connect",
        "--alias",
        "late",
        "netdns_back",
        "netdns-a-1",
    ]);
    let a_back = net.ip("a", "back");
    assert_eq!(net.lookup("b", "late"), [a_back]);
    assert_eq!(net.lookup("a", "b"), [net.ip("b", "back")]);
    assert_eq!(net.get("b", "late").as_deref(), Some("a"));
    ok(&["network", "disconnect", "netdns_back", "netdns-a-1"]);
    assert!(net.lookup("b", "late").is_empty());
    assert_eq!(net.get("b", &a_back.to_string()), None);

    let down = net.berth(&["down", "-t", "0"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
}

#[test]
fn scaled_service_resolves_to_all_replicas_and_follows_scale() {
    require_root!();
    let env = Env::new("netscale");
    let resolv = env.dir.join("host-resolv.conf");
    std::fs::write(&resolv, "").unwrap();
    let net = Net {
        env: &env,
        resolv,
        pool: env.pool.clone(),
    };
    env.write(
        "compose.yaml",
        r#"services:
  web:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /w; hostname > /w/index.html; httpd -f -p 8080 -h /w & wait"]
  client:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]
"#,
    );
    let up = net.berth(&["up", "-d", "--scale", "web=3"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let ips = net.lookup("client", "web");
    assert_eq!(ips.len(), 3, "{ips:?}");
    // Round robin: the first address is not always the same one.
    let firsts: std::collections::BTreeSet<Ipv4Addr> = (0..8)
        .filter_map(|_| net.lookup("client", "web").first().copied())
        .collect();
    assert!(firsts.len() > 1, "{firsts:?}");
    let up = net.berth(&["up", "-d", "--scale", "web=1"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert_eq!(net.lookup("client", "web").len(), 1);
    // A stopped container's name is gone at once.
    let stop = net.berth(&["stop", "-t", "0", "web"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    // The resolver re-reads the records when they change, and at least every 200 ms.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !net.lookup("client", "web").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "web still resolves after stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A container that keeps opening TCP connections to its resolver and sending nothing (or half
/// a query) does not stall its own shim: UDP lookups still answer at once and its log keeps
/// growing.
#[test]
fn silent_tcp_dns_clients_stall_nothing() {
    require_root!();
    let env = Env::new("netdnstcp");
    env.write(
        "compose.yaml",
        r#"services:
  app:
    image: busybox
    command:
      - sh
      - -c
      - |
        trap 'exit 0' TERM
        while true; do (sleep 5 | nc 127.0.0.11 53 &); (printf '\000\036\001'; sleep 5) | nc 127.0.0.11 53 & usleep 100000; done &
        i=0; while true; do i=$$((i+1)); echo tick $$i; usleep 100000; done
"#,
    );
    env.ok(&["up", "-d"]);
    let ticks = || {
        env.ok(&["logs", "app"])
            .lines()
            .filter(|l| l.contains("tick"))
            .count()
    };
    std::thread::sleep(std::time::Duration::from_secs(2));
    for round in 0..5 {
        let before = ticks();
        let started = std::time::Instant::now();
        let out = env.ok(&["exec", "-T", "app", "nslookup", "app", "127.0.0.11"]);
        let took = started.elapsed();
        assert!(out.contains("Address"), "{out}");
        assert!(
            took < std::time::Duration::from_secs(2),
            "round {round}: a UDP lookup took {took:?}"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
        let after = ticks();
        assert!(
            after >= before + 5,
            "round {round}: the log grew from {before} to {after} lines in a second"
        );
    }
}
