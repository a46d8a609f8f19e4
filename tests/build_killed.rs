//! A build killed with SIGKILL in the middle of RUN leaves nothing behind once the next build
//! (or `builder prune`) ran: no container, shim, mount, netns or temp directory (root only).
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::Env;

#[test]
fn killed_build_is_reaped() {
    require_root!();
    let env = Env::new("bk");
    env.write("Dockerfile", "FROM busybox\nRUN sleep 1000\n");
    let mut child = Command::new(util::BERTH)
        .args(["build", "-t", "slow", "."])
        .current_dir(&env.dir)
        .env("BERTH_ROOT", env.root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the RUN container exists, then kill the CLI (not its shim).
    let containers = env.root().join("containers");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&containers).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "the RUN step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !util::leftovers(env.root(), &[]).is_empty(),
        "a killed build leaves its RUN container running until reaped"
    );

    // The next build reaps it first, and succeeds.
    env.write("Dockerfile", "FROM busybox\nRUN echo ok > /ok\n");
    env.ok(&["build", "-t", "fine", "."]);
    assert_eq!(util::leftovers(env.root(), &[]), Vec::<String>::new());
    let tmp: Vec<String> = std::fs::read_dir(env.root().join("build-tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "empty")
        .collect();
    assert!(tmp.is_empty(), "build-tmp keeps {tmp:?}");
    assert!(
        env.ok(&["images", "-q", "--filter", "reference=slow"])
            .trim()
            .is_empty()
    );
}
