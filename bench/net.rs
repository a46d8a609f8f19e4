//! Network benchmark (root): attaching a container namespace to a network, the resolver's
//! answer time for a service name from inside a container, and HTTP throughput through a
//! published port against the container's own address (warm-up, then 41 rounds each fetching
//! through both paths back to back; the median of the per-round ratios, with quartiles, so a
//! shared machine's drifting load hits both paths alike).
//!
//! `cargo bench --bench net` (optimised), or on a busy machine
//! `cargo bench --profile dev --bench net`. Everything lives under a temp state root, on a
//! subnet of 10.217.0.0/16, and is removed at the end (also on panic).
#![allow(clippy::print_stdout, clippy::print_stderr)]
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth::state::Paths;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

struct Root {
    dir: tempfile::TempDir,
    project: PathBuf,
    pool: String,
}

impl Root {
    fn berth(&self, args: &[&str]) -> String {
        let out = Command::new(BERTH)
            .args(args)
            .current_dir(&self.project)
            .env("BERTH_ROOT", self.dir.path())
            .env("BERTH_SUBNET_POOL", &self.pool)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = Command::new(BERTH)
            .args(["down", "-v", "-t", "0"])
            .current_dir(&self.project)
            .env("BERTH_ROOT", self.dir.path())
            .output();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The record of the container of `service` (id, first address).
fn container(root: &Path, service: &str) -> (String, Ipv4Addr) {
    for e in std::fs::read_dir(root.join("containers"))
        .unwrap()
        .flatten()
    {
        let rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.path().join("container.json")).unwrap())
                .unwrap();
        if rec["labels"]["com.docker.compose.service"] == service {
            let ip = rec["networks"][0]["ip"].as_str().unwrap().parse().unwrap();
            return (rec["id"].as_str().unwrap().to_string(), ip);
        }
    }
    panic!("no container for {service}")
}

/// Seconds to download `path` over HTTP/1.0 from `addr`, and the bytes received.
fn download(addr: &str) -> (Duration, usize) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /big HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("{e}"),
        }
    }
    (start.elapsed(), total)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the network benchmark needs root");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("berth-bench-net-")
        .tempdir()
        .unwrap();
    let project = dir.path().join("benchnet");
    std::fs::create_dir_all(&project).unwrap();
    let root = Root {
        pool: format!("10.217.{}.0/24", rand::random::<u8>()),
        dir,
        project,
    };
    let tar = root.dir.path().join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mkimage-busybox");
    assert!(Command::new(script).arg(&tar).status().unwrap().success());
    root.berth(&["image", "load", "-i", tar.to_str().unwrap()]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        root.project.join("compose.yaml"),
        format!(
            r#"services:
  web:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /w; dd if=/dev/zero of=/w/big bs=1M count=64 2>/dev/null; echo ok > /w/index.html; httpd -f -p 8080 -h /w & wait"]
    ports: ["127.0.0.1:{port}:8080"]
  client:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
"#
        ),
    )
    .unwrap();
    root.berth(&["up", "-d"]);
    let paths = Paths::new(Some(root.dir.path()));
    let (client, _) = container(root.dir.path(), "client");
    let (_, web_ip) = container(root.dir.path(), "web");

    // DNS: queries for the service name from the client's namespace.
    let netns = paths.netns(&client);
    let times = std::thread::spawn(move || {
        let f = std::fs::File::open(&netns).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s.connect("127.0.0.11:53").unwrap();
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("web").unwrap(),
            RecordType::A,
        ));
        let bytes = q.to_vec().unwrap();
        let mut buf = [0u8; 512];
        s.send(&bytes).unwrap();
        let n = s.recv(&mut buf).unwrap();
        let answer = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(answer.answers.len(), 1, "{answer:?}");
        (0..300)
            .map(|_| {
                let t = Instant::now();
                s.send(&bytes).unwrap();
                s.recv(&mut buf).unwrap();
                t.elapsed()
            })
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    let dns = median(times);

    // HTTP: 64 MiB through the published port and straight to the container, once httpd is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
        assert!(Instant::now() < deadline, "web never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    // One sample: a 64 MiB GET, in MiB/s.
    let sample = |addr: &str| {
        let (t, n) = download(addr);
        assert!(n > 64 << 20, "{n} bytes");
        n as f64 / t.as_secs_f64() / (1 << 20) as f64
    };
    let (via_port, via_ip) = (format!("127.0.0.1:{port}"), format!("{web_ip}:8080"));
    // Warm-up (page cache, conntrack, ARP, httpd's first fork), then many short rounds that
    // alternate the two paths back to back, so load drifting on a shared machine hits both
    // alike; the ratio is taken per round and its median reported, with its quartiles.
    for _ in 0..3 {
        sample(&via_port);
        sample(&via_ip);
    }
    let rounds = 41;
    let (mut published, mut direct, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let (p, d) = if i % 2 == 0 {
            let p = sample(&via_port);
            (p, sample(&via_ip))
        } else {
            let d = sample(&via_ip);
            (sample(&via_port), d)
        };
        published.push(p);
        direct.push(d);
        ratio.push(p / d);
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[v.len() / 2], v[v.len() / 4], v[v.len() * 3 / 4])
    };
    let (published, direct, ratio) = (med(published), med(direct), med(ratio));

    // Attach: a fresh namespace joined to the project's network, 20 times.
    let host = berth::project::net_host(&paths);
    let net = berth::project::network::load(&paths, "benchnet_default")
        .unwrap()
        .unwrap()
        .network;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let alloc = berth::project::network::allocator(&paths, &net);
    let mut attach = Vec::new();
    for i in 0..20 {
        let ns = paths.run.join(format!("bench-ns-{i}"));
        berth::net::create_netns(&ns).unwrap();
        let owner = format!("bench-{i}");
        let ip = alloc.allocate(&owner).unwrap();
        let ifname = format!("vbbench{i}");
        let t = Instant::now();
        rt.block_on(host.attach(&ns, &net, ip, &ifname, "eth0"))
            .unwrap();
        attach.push(t.elapsed());
        rt.block_on(host.detach(&ifname)).unwrap();
        alloc.release(&owner).unwrap();
        berth::net::remove_netns(&ns).unwrap();
    }

    println!(
        "attach a namespace to a network (median of 20): {:.2} ms",
        median(attach).as_secs_f64() * 1e3
    );
    println!(
        "DNS answer for a service name from inside a container (median of 300): {:.3} ms",
        dns.as_secs_f64() * 1e3
    );
    println!(
        "HTTP (64 MiB GETs, {rounds} paired rounds after a warm-up): published port 127.0.0.1:{port} {:.0} MiB/s, container address {:.0} MiB/s; published/direct per round: median {:.0}% (quartiles {:.0}-{:.0}%)",
        published.0,
        direct.0,
        ratio.0 * 100.0,
        ratio.1 * 100.0,
        ratio.2 * 100.0
    );
}
