//! Root end-to-end tests of the network layer: real bridges, veths, namespaces and nftables.
//!
//! Everything a test creates is named `bt<random>` (links), `berth_t<random>` (table) or lives
//! in its temp dir (namespaces), uses a random free /24 of 10.213.0.0/16, and is removed by a
//! Drop guard even when the test fails. Processes are entered with `nsenter --net=PATH`.
#![allow(clippy::print_stderr)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::net::{self, BridgeNetwork, NetError, NetHost, PortMapping, Protocol};
use ipnet::Ipv4Net;

const BUSYBOX: &str = "/bin/busybox";

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    for (prog, arg) in [
        ("nft", "--version"),
        ("nsenter", "--version"),
        (BUSYBOX, "true"),
    ] {
        let ok = Command::new(prog)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("needs {prog}"));
        }
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("skipping: {reason}");
            return;
        }
    };
}

fn rand_hex() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    let mut text = format!("[{}] ", out.status);
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs a busybox applet inside the namespace.
fn in_ns(ns: &Path, args: &[&str]) -> (bool, String) {
    run(Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg(BUSYBOX)
        .args(args))
}

/// GET `url` from `ns` (the host when `None`), bounded to 3 s. Debian 12's busybox 1.35
/// `wget -T` segfaults, so coreutils `timeout` does the bounding.
fn fetch_in(ns: Option<&Path>, url: &str) -> (bool, String) {
    let get = ["timeout", "3", BUSYBOX, "wget", "-qO-", url];
    match ns {
        Some(ns) => run(Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(get)),
        None => run(Command::new(get[0]).args(&get[1..])),
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn table_exists(table: &str) -> bool {
    run(Command::new("nft").args(["list", "table", "inet", table])).0
}

fn mounted_under(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&*dir)))
}

/// Owns everything one test creates; Drop removes it all.
struct Fixture {
    tag: String,
    dir: tempfile::TempDir,
    host: NetHost,
    networks: Vec<BridgeNetwork>,
    netns: Vec<PathBuf>,
    veths: Vec<String>,
    children: Vec<Child>,
}

impl Fixture {
    fn new() -> Self {
        let tag = rand_hex();
        let dir = tempfile::tempdir().unwrap();
        let host = NetHost::new(dir.path().join("run"), format!("berth_t{tag}"));
        Fixture {
            tag,
            dir,
            host,
            networks: Vec::new(),
            netns: Vec::new(),
            veths: Vec::new(),
            children: Vec::new(),
        }
    }

    /// A network on a random /24 of 10.213.0.0/16 that no host route or other network uses.
    async fn network(&mut self, internal: bool) -> BridgeNetwork {
        let mut taken = net::host_routes().await.unwrap();
        taken.extend(self.networks.iter().map(|n| n.subnet));
        let pool = net::ipam::parse_pool("10.213.0.0/16").unwrap();
        let start = rand::random::<u8>() as usize;
        let rotated: Vec<Ipv4Net> = pool[start..]
            .iter()
            .chain(&pool[..start])
            .copied()
            .collect();
        let subnet = net::pick_subnet(&rotated, 24, &taken).expect("a free /24 in 10.213/16");
        let n = BridgeNetwork {
            name: format!("t{}_{}", self.tag, self.networks.len()),
            bridge: format!("bt{}b{}", self.tag, self.networks.len()),
            subnet,
            gateway: subnet.hosts().next().unwrap(),
            internal,
            mtu: None,
            ip_range: None,
            subnet6: None,
            gateway6: None,
        };
        self.networks.push(n.clone());
        self.host.ensure_network(&n).await.unwrap();
        n
    }

    /// A namespace attached to `n` with host address `.index + 1`.
    async fn container(&mut self, n: &BridgeNetwork, index: u8) -> (PathBuf, Ipv4Addr) {
        let i = self.netns.len();
        let path = self.dir.path().join(format!("netns/c{i}"));
        net::create_netns(&path).unwrap();
        self.netns.push(path.clone());
        let host_if = format!("bt{}v{i}", self.tag);
        self.veths.push(host_if.clone());
        let o = n.subnet.network().octets();
        let ip = Ipv4Addr::new(o[0], o[1], o[2], index + 1);
        self.host
            .attach(&path, n, ip, &host_if, "eth0")
            .await
            .unwrap();
        (path, ip)
    }

    /// `busybox httpd` serving `body` inside `ns` (or on the host when `None`) at `addr`.
    fn httpd(&mut self, ns: Option<&Path>, addr: &str, body: &str) {
        let www = self.dir.path().join(format!("www{}", self.children.len()));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), body).unwrap();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(BUSYBOX);
                c
            }
            None => Command::new(BUSYBOX),
        };
        let child = cmd
            .args(["httpd", "-f", "-p", addr, "-h"])
            .arg(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Removes everything through the API and checks nothing is left; then the removals are
    /// run again to show they are idempotent.
    async fn teardown_and_check(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
        for _ in 0..2 {
            for v in &self.veths {
                self.host.detach(v).await.unwrap();
            }
            for n in &self.networks {
                self.host.remove_network(n).await.unwrap();
            }
            self.host.remove_table().unwrap();
            for ns in &self.netns {
                net::remove_netns(ns).unwrap();
            }
        }
        for v in &self.veths {
            assert!(!link_exists(v), "{v} left behind");
        }
        for n in &self.networks {
            assert!(!link_exists(&n.bridge), "{} left behind", n.bridge);
        }
        assert!(!table_exists(&self.host.table), "table left behind");
        assert!(!mounted_under(self.dir.path()), "netns mount left behind");
        for ns in &self.netns {
            assert!(!ns.exists());
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in self
            .veths
            .iter()
            .chain(self.networks.iter().map(|n| &n.bridge))
        {
            if link_exists(name) {
                let _ = Command::new("ip").args(["link", "del", name]).status();
            }
        }
        let _ = self.host.remove_table();
        for ns in &self.netns {
            let _ = net::remove_netns(ns);
        }
    }
}

/// Retries `f` for up to 3 s (servers take a moment to start).
fn eventually(mut f: impl FnMut() -> (bool, String)) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = f();
        if r.0 || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn one_network_ping_http_published_ports_and_teardown() {
    require_root!();
    let started = Instant::now();
    let mut fx = Fixture::new();
    let n = fx.network(false).await;
    // Idempotent.
    fx.host.ensure_network(&n).await.unwrap();
    let (a, _ip_a) = fx.container(&n, 1).await;
    let (b, ip_b) = fx.container(&n, 2).await;

    let (ok, out) = in_ns(&a, &["ping", "-c", "1", "-W", "2", &ip_b.to_string()]);
    assert!(ok, "ping a -> b: {out}");

    fx.httpd(Some(&b), "0.0.0.0:80", "hello from b");
    let (ok, out) = eventually(|| fetch_in(Some(&a), &format!("http://{ip_b}/")));
    assert!(ok && out.contains("hello from b"), "a -> b:80: {out}");

    // Published on every host address: from 127.0.0.1, from the gateway address, and from a
    // container of the same network (hairpin).
    let (_held, port) = net::reserve_port(None, 0, Protocol::Tcp).unwrap();
    let any = PortMapping {
        host_ip: None,
        host_port: port,
        protocol: Protocol::Tcp,
        container_ip: ip_b,
        container_port: 80,
    };
    fx.host.publish(&[any]).unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://{}:{port}/", n.gateway),
    ] {
        let (ok, out) = fetch_in(None, &url);
        assert!(ok && out.contains("hello from b"), "host -> {url}: {out}");
    }
    let (ok, out) = fetch_in(Some(&a), &format!("http://{}:{port}/", n.gateway));
    assert!(ok && out.contains("hello from b"), "hairpin: {out}");

    // The port is held: a second reservation is Docker's error.
    let err = net::reserve_port(None, port, Protocol::Tcp).unwrap_err();
    assert!(matches!(err, NetError::PortAllocated { .. }), "{err}");

    // Published on 127.0.0.1 only: not DNATed on the gateway address.
    let (_held_local, local_port) =
        net::reserve_port(Some(Ipv4Addr::LOCALHOST), 0, Protocol::Tcp).unwrap();
    let local = PortMapping {
        host_ip: Some(Ipv4Addr::LOCALHOST),
        host_port: local_port,
        ..any
    };
    fx.host.publish(&[local]).unwrap();
    let (ok, out) = fetch_in(None, &format!("http://127.0.0.1:{local_port}/"));
    assert!(ok && out.contains("hello from b"), "127.0.0.1 only: {out}");
    let (ok, _) = fetch_in(None, &format!("http://{}:{local_port}/", n.gateway));
    assert!(
        !ok,
        "a 127.0.0.1 mapping must not answer on the gateway address"
    );

    // Unpublish is idempotent and takes effect.
    fx.host.unpublish(&[any, local]).unwrap();
    fx.host.unpublish(&[any, local]).unwrap();
    let (ok, _) = fetch_in(None, &format!("http://127.0.0.1:{port}/"));
    assert!(!ok, "unpublished port still answers");

    fx.teardown_and_check().await;
    eprintln!("one network: {:?}", started.elapsed());
}

#[tokio::test]
async fn networks_are_isolated_but_reach_published_ports() {
    require_root!();
    let mut fx = Fixture::new();
    let n1 = fx.network(false).await;
    let n2 = fx.network(false).await;
    let (a, ip_a) = fx.container(&n1, 1).await;
    let (c, _ip_c) = fx.container(&n2, 1).await;

    let (ok, out) = in_ns(&c, &["ping", "-c", "1", "-W", "2", &n2.gateway.to_string()]);
    assert!(ok, "c -> own gateway: {out}");
    let (ok, _) = in_ns(&c, &["ping", "-c", "1", "-W", "1", &ip_a.to_string()]);
    assert!(!ok, "c on {} reached a on {}", n2.bridge, n1.bridge);

    fx.httpd(Some(&a), "0.0.0.0:80", "hello from a");
    let (ok, _) = eventually(|| fetch_in(Some(&a), "http://127.0.0.1/"));
    assert!(ok, "httpd in a did not start");
    let (ok, _) = fetch_in(Some(&c), &format!("http://{ip_a}/"));
    assert!(!ok, "c fetched from a directly across networks");

    // Through a published port on a host address, another network may connect (Docker does).
    let (_held, port) = net::reserve_port(None, 0, Protocol::Tcp).unwrap();
    let m = PortMapping {
        host_ip: None,
        host_port: port,
        protocol: Protocol::Tcp,
        container_ip: ip_a,
        container_port: 80,
    };
    fx.host.publish(&[m]).unwrap();
    let (ok, out) = fetch_in(Some(&c), &format!("http://{}:{port}/", n2.gateway));
    assert!(
        ok && out.contains("hello from a"),
        "c -> published port of a: {out}"
    );

    fx.teardown_and_check().await;
}

#[tokio::test]
async fn container_cannot_reach_host_loopback_services() {
    // CVE-2020-8558: with route_localnet=1 on the bridge, a container that routes 127.0.0.1
    // via its gateway must still not reach a host service bound to 127.0.0.1.
    require_root!();
    let mut fx = Fixture::new();
    let n = fx.network(false).await;
    let (a, _) = fx.container(&n, 1).await;
    // A host service bound to 127.0.0.1 only. A connection attempt that gets through shows up
    // in /proc/net/tcp as SYN_RECV or ESTABLISHED (the reply path may still fail, the service
    // has been reached all the same).
    let host_service = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host_service.local_addr().unwrap().port();
    let gw = n.gateway.to_string();
    let script = format!(
        "ip route del local 127.0.0.0/8 dev lo table local && \
         ip route del local 127.0.0.1 dev lo table local && \
         ip route add 127.0.0.1/32 via {gw} dev eth0 && \
         sysctl -qw net.ipv4.conf.eth0.route_localnet=1 net.ipv4.conf.all.route_localnet=1"
    );
    let (ok, out) = run(Command::new("nsenter")
        .arg(format!("--net={}", a.display()))
        .args(["sh", "-c", &script]));
    assert!(ok, "attack setup: {out}");
    let url = format!("http://127.0.0.1:{port}/");
    fetch_in(Some(&a), &url);
    let reached = std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!(" 0100007F:{port:04X} ")))
        .any(|l| l.split_whitespace().nth(3) != Some("0A")); // anything but LISTEN
    assert!(!reached, "container reached the host's 127.0.0.1:{port}");
    drop(host_service);
    fx.teardown_and_check().await;
}

#[tokio::test]
async fn ensure_network_repairs_a_deleted_table() {
    require_root!();
    let mut fx = Fixture::new();
    let n = fx.network(false).await;
    let (a, ip_a) = fx.container(&n, 1).await;
    fx.httpd(Some(&a), "0.0.0.0:80", "still here");
    let (_held, port) = net::reserve_port(None, 0, Protocol::Tcp).unwrap();
    let m = PortMapping {
        host_ip: None,
        host_port: port,
        protocol: Protocol::Tcp,
        container_ip: ip_a,
        container_port: 80,
    };
    fx.host.publish(&[m]).unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let (ok, out) = eventually(|| fetch_in(None, &url));
    assert!(ok, "{out}");

    // What `nft flush ruleset` would do to us (only our own table is touched here).
    fx.host.remove_table().unwrap();
    assert!(!fetch_in(None, &url).0);
    fx.host.ensure_network(&n).await.unwrap();
    fx.host.publish(&[m]).unwrap();
    let (ok, out) = fetch_in(None, &url);
    assert!(ok && out.contains("still here"), "{out}");
    // Re-applying does not duplicate rules.
    fx.host.ensure_network(&n).await.unwrap();
    let (_, listing) =
        run(Command::new("nft").args(["list", "chain", "inet", &fx.host.table, "forward"]));
    assert_eq!(
        listing.matches("iifname @bridges accept").count(),
        1,
        "{listing}"
    );
    fx.teardown_and_check().await;
}

#[tokio::test]
async fn internal_network_has_no_default_route() {
    require_root!();
    let mut fx = Fixture::new();
    let n = fx.network(true).await;
    let (a, _) = fx.container(&n, 1).await;
    let (b, ip_b) = fx.container(&n, 2).await;
    let (ok, out) = in_ns(&a, &["ping", "-c", "1", "-W", "2", &ip_b.to_string()]);
    assert!(ok, "internal network members reach each other: {out}");
    let (_, routes) = in_ns(&b, &["ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    fx.teardown_and_check().await;
}

#[test]
fn netns_create_is_idempotent_and_remove_tolerates_missing() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ns");
    net::create_netns(&path).unwrap();
    net::create_netns(&path).unwrap();
    let (ok, out) = in_ns(&path, &["ip", "-o", "link", "show", "lo"]);
    assert!(ok && out.contains("UP"), "lo is up inside: {out}");
    net::remove_netns(&path).unwrap();
    net::remove_netns(&path).unwrap();
    assert!(!mounted_under(dir.path()));
    assert!(!path.exists());
}
