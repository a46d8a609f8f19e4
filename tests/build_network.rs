//! The network of RUN steps (root only): a private namespace by default, so a step cannot
//! reach a service listening on the host's loopback; `RUN --network=host` and
//! `build --network host` share the host's namespace.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use util::Env;

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
