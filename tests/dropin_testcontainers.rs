//! Drop-in proof: testcontainers-python's `DockerCompose`, pointed at the berth binary (it runs
//! `<binary> compose …`), starts a stack, finds its published port, execs, reads logs and stops.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::process::Command;

#[test]
fn testcontainers_drives_berth_as_docker_compose() {
    require_root!();
    let has_tc = Command::new("python3")
        .args(["-c", "import testcontainers.compose"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_tc {
        eprintln!("SKIPPED: python3 module testcontainers is missing (pip install testcontainers)");
        return;
    }
    let env = util::Env::new("tcdrop");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testcontainers");
    std::fs::copy(
        format!("{src}/proj/compose.yaml"),
        env.dir.join("compose.yaml"),
    )
    .unwrap();
    let out = Command::new("python3")
        .arg(format!("{src}/drive.py"))
        .arg(&env.dir)
        .env("BERTH", util::BERTH)
        .env("BERTH_ROOT", env.root())
        .env("BERTH_SUBNET_POOL", &env.pool)
        .output()
        .unwrap();
    let stdout = util::text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        util::text(&out.stderr)
    );
    assert!(stdout.contains("body=hi-from-web"), "{stdout}");
    assert!(stdout.contains("exec=hi-from-web/0"), "{stdout}");
    assert!(stdout.contains("logs=True"), "{stdout}");
    // stop() ran `down --volumes`: nothing of the project is left.
    assert!(env.ok(&["-p", "tcdrop", "ps", "-a", "-q"]).is_empty());
}
