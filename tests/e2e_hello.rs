//! The README example, end to end, as a user would check it (root only).
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::time::Duration;
use util::{Env, http_get};

/// examples/hello/compose.yaml with its host port replaced by a free one.
fn hello_compose(port: u16) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello/compose.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("\"18080:8080\""));
    text.replace("\"18080:8080\"", &format!("\"{port}:8080\""))
}

#[test]
fn hello_example_up_ps_logs_down() {
    require_root!();
    let env = Env::new("hello");
    let port = util::free_port();
    env.write("compose.yaml", &hello_compose(port));

    env.ok(&["up", "-d"]);
    let mut links = util::bridges(env.root());
    assert_eq!(links.len(), 1, "one network: hello_default");
    links.extend(util::veths(env.root()));
    assert_eq!(links.len(), 3, "a veth per container");

    // The page, through the published port, from loopback and from another host address.
    let page =
        http_get(&format!("127.0.0.1:{port}"), Duration::from_secs(5)).expect("page via 127.0.0.1");
    assert!(page.starts_with("hello from berth"), "{page}");
    match util::host_address() {
        Some(ip) => {
            let again = http_get(&format!("{ip}:{port}"), Duration::from_secs(5))
                .expect("page via host address");
            assert_eq!(again, page);
        }
        None => {
            eprintln!("note: no global IPv4 address on this host; skipped the non-loopback check")
        }
    }

    // ps: both running, docker compose's names, image and ports.
    let ps = env.ok(&["ps"]);
    let web = ps
        .lines()
        .find(|l| l.starts_with("hello-web-1"))
        .expect(&ps);
    assert!(web.contains("busybox") && web.contains("Up"), "{ps}");
    assert!(web.contains(&format!("0.0.0.0:{port}->8080/tcp")), "{ps}");
    assert!(
        ps.lines()
            .any(|l| l.starts_with("hello-client-1") && l.contains("Up")),
        "{ps}"
    );
    let json = env.ok(&["ps", "--format", "json"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["Project"], "hello");
    assert_eq!(first["State"], "running");

    // The client fetched the page by service name.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logs = env.ok(&["logs", "client"]);
        if logs
            .lines()
            .any(|l| l.starts_with("client-1  | ") && l.ends_with(page.trim_end()))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "client never got the page:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // `berth compose <cmd>` is `berth <cmd>`.
    assert_eq!(env.ok(&["compose", "ps", "-q"]).lines().count(), 2);

    // down keeps the volume: the same page comes back after another up.
    env.ok(&["down", "-t", "2"]);
    assert_eq!(util::leftovers(env.root(), &links), Vec::<String>::new());
    assert!(http_get(&format!("127.0.0.1:{port}"), Duration::ZERO).is_none());
    env.ok(&["up", "-d"]);
    let mut links2 = util::bridges(env.root());
    links2.extend(util::veths(env.root()));
    let page2 = http_get(&format!("127.0.0.1:{port}"), Duration::from_secs(5))
        .expect("page after second up");
    assert_eq!(page2, page, "the named volume survived down");

    // A second up with nothing changed touches nothing.
    let out = env.berth(&["up", "-d"]);
    assert!(out.status.success());
    assert!(
        util::text(&out.stderr).contains("hello-web-1  Running"),
        "{}",
        util::text(&out.stderr)
    );

    // down -v removes the volume too, and leaves nothing behind.
    env.ok(&["down", "-v", "-t", "2"]);
    assert_eq!(util::leftovers(env.root(), &links2), Vec::<String>::new());
    assert!(!env.root().join("volumes/hello_site").exists());
}
