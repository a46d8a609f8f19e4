//! The network of RUN steps (root only): by default a namespace of its own on the NAT'd build
//! network (a bridge of this root), so a step reaches the bridge's gateway but not a service
//! listening on the host's loopback; `RUN --network=host` and `build --network host` share
//! the host's namespace; `none` has loopback only.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use util::{Env, text};

/// An HTTP server on 127.0.0.1 answering `host-only` to every request; returns its port and
/// the number of connections it accepted.
fn host_only_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nhost-only");
        }
    });
    (port, hits)
}

#[test]
fn run_steps_get_a_private_network_unless_host_is_asked() {
    require_root!();
    let env = Env::new("bnet");
    let (port, hits) = host_only_server();
    let fetch = format!("wget -q -O /got http://127.0.0.1:{port}/");

    // Default: the step's 127.0.0.1 is its own loopback, up but with nobody listening.
    env.write(
        "Dockerfile",
        &format!("FROM busybox\nRUN ping -c 1 -W 2 127.0.0.1 >/dev/null\nRUN {fetch}\n"),
    );
    let err = env.fails(&["build", "-t", "bnet-default", "."]);
    assert!(err.contains("did not complete successfully"), "{err}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the private step reached the host"
    );

    // `none` likewise.
    env.write(
        "Dockerfile",
        &format!("FROM busybox\nRUN --network=none {fetch}\n"),
    );
    env.fails(&["build", "-t", "bnet-none", "."]);
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // `RUN --network=host`: the host's loopback.
    env.write(
        "Dockerfile",
        &format!("FROM busybox\nRUN --network=host {fetch} && grep -q host-only /got\n"),
    );
    env.ok(&["build", "-t", "bnet-host", "."]);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // `build --network host` is every step's default.
    env.write(
        "Dockerfile",
        &format!("FROM busybox\nRUN {fetch} && grep -q host-only /got\n"),
    );
    env.ok(&["build", "--network", "host", "-t", "bnet-host2", "."]);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // The same Dockerfile without it runs again (the network is part of the cache key) and
    // fails.
    env.fails(&["build", "-t", "bnet-default2", "."]);
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Anything else is an error naming the line.
    env.write("Dockerfile", "FROM busybox\nRUN --network=bridge true\n");
    let err = env.fails(&["build", "-t", "bnet-bad", "."]);
    assert!(err.contains("--network=bridge"), "{err}");
}

/// HTTP servers answering `via-bridge`, one on the gateway address (`.1`) of every /24 of
/// `pool` (a /20): the build network takes one of them, and it need not exist yet (the
/// sockets are bound with `IP_FREEBIND`). Returns the port and the connection count.
fn gateway_servers(pool: &str) -> (u16, Arc<AtomicUsize>) {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket,
        sockopt,
    };
    let base: std::net::Ipv4Addr = pool.split('/').next().unwrap().parse().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    'port: loop {
        let port = util::free_port();
        let mut listeners = Vec::new();
        for k in 0..16u32 {
            let gw = std::net::Ipv4Addr::from(u32::from(base) + k * 256 + 1);
            let fd = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .unwrap();
            setsockopt(&fd, sockopt::IpFreebind, &true).unwrap();
            if bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &SockaddrIn::from(std::net::SocketAddrV4::new(gw, port)),
            )
            .is_err()
            {
                continue 'port;
            }
            listen(&fd, Backlog::new(16).unwrap()).unwrap();
            listeners.push(TcpListener::from(fd));
        }
        for listener in listeners {
            let counter = hits.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut conn) = conn else { continue };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf);
                    let _ =
                        conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nvia-bridge");
                }
            });
        }
        return (port, hits);
    }
}

#[test]
fn default_run_steps_are_on_a_natd_bridge_released_afterwards() {
    require_root!();
    let env = Env::new("bnetnat");
    let (port, hits) = gateway_servers(&env.pool);
    let (host_port, host_hits) = host_only_server();
    // The step prints its address, its routes and the host-side index of its veth, reaches the
    // server on its gateway, and still not the host's loopback.
    env.write(
        "Dockerfile",
        &format!(
            "FROM busybox\n\
             RUN echo \"ADDR\"\"=$(ip -o -4 addr show eth0 | awk '{{print $4}}')\" && \\\n\
             \x20   echo \"ROUTE\"\"=$(ip route | grep ^default)\" && \\\n\
             \x20   echo \"PEER\"\"=$(cat /sys/class/net/eth0/iflink)\" && \\\n\
             \x20   GW=$(ip route | awk '/^default/{{print $3}}') && \\\n\
             \x20   wget -q -O /got http://$GW:{port}/ && grep -q via-bridge /got && \\\n\
             \x20   ! wget -q -T 2 -O /dev/null http://127.0.0.1:{host_port}/\n"
        ),
    );
    let out = env.berth(&["build", "-t", "bnetnat", "."]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "{all}");
    assert_eq!(host_hits.load(Ordering::SeqCst), 0);
    let field = |key: &str| -> String {
        let i = all.find(key).unwrap_or_else(|| panic!("no {key} in {all}"));
        all[i + key.len()..]
            .lines()
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    // An address of the pool on eth0, a default route via the bridge's gateway (`.1`).
    let addr: ipnet::Ipv4Net = field("ADDR=").parse().unwrap();
    let pool: ipnet::Ipv4Net = env.pool.parse().unwrap();
    assert!(pool.contains(&addr.addr()), "{addr} not in {pool}");
    assert_eq!(addr.prefix_len(), 24);
    let gw = std::net::Ipv4Addr::from(u32::from(addr.network()) + 1);
    let route = field("ROUTE=");
    assert!(
        route.starts_with(&format!("default via {gw} dev eth0")),
        "{route}"
    );
    // Afterwards: the veth, the bridge (with its gateway address), the network, its firewall
    // table are gone.
    let peer = field("PEER=");
    let links = text(
        &std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        !links.lines().any(|l| l.starts_with(&format!("{peer}:"))),
        "the step's veth is left: {links}"
    );
    let addrs = text(
        &std::process::Command::new("ip")
            .args(["-o", "-4", "addr"])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        !addrs.contains(&format!(" {gw}/")),
        "the build bridge is left: {addrs}"
    );
    assert!(!env.ok(&["network", "ls"]).contains("berth_build"));
    let left = util::leftovers(env.root(), &[]);
    assert!(left.is_empty(), "{left:?}");

    // The step's resolv.conf is the host's without loopback nameservers (which would not
    // answer in its namespace).
    let fake = env.root().join("host-resolv.conf");
    std::fs::write(
        &fake,
        "nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.test\n",
    )
    .unwrap();
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN cat /etc/resolv.conf | sed 's/^/RESOLV /'\n",
    );
    let out = std::process::Command::new(util::BERTH)
        .args(["build", "-t", "bnetnat-dns", "."])
        .current_dir(&env.dir)
        .env("BERTH_ROOT", env.root())
        .env("BERTH_SUBNET_POOL", &env.pool)
        .env("BERTH_RESOLV_CONF", &fake)
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}");
    let resolv: Vec<&str> = all
        .lines()
        .filter_map(|l| l.split_once("RESOLV ").map(|(_, r)| r))
        .filter(|r| !r.starts_with('/'))
        .collect();
    assert_eq!(
        resolv,
        ["nameserver 192.0.2.53", "search example.test"],
        "{all}"
    );

    // Several default steps in a row (the network ensured once; steps whose layers are
    // identical stack), then a failing one, which releases its address too.
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN echo a\nRUN echo b\nRUN ip route | grep -q ^default && echo x >/x\n\
         RUN grep -q x /x && ip route | grep -q ^default && false\n",
    );
    let err = env.fails(&["build", "-t", "bnetnat-fail", "."]);
    assert!(err.contains("did not complete successfully"), "{err}");
    assert!(!env.ok(&["network", "ls"]).contains("berth_build"));
    assert!(
        !env.root()
            .join("networks/berth_build.addresses.json")
            .exists(),
        "the address record is left"
    );
    let left = util::leftovers(env.root(), &[]);
    assert!(left.is_empty(), "{left:?}");
}
