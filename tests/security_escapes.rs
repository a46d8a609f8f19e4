//! The escape fixtures of security.md §3 that apply to starting a container (root only): a
//! hostile image (`/dev` or `/proc` a symlink to a host path) and a working directory outside
//! the rootfs (CVE-2024-21626). Each must fail to start or run harmlessly, with nothing
//! written on the host.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;
use util::Env;

/// Loads `name` into `env`: the test busybox image plus one layer holding the symlinks
/// `links` (`(path in the image, target)`), built as a docker archive.
fn load_image_with_links(env: &Env, name: &str, links: &[(&str, &str)]) {
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("base.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mkimage-busybox");
    let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
    ok(Command::new(&script)
        .arg("--docker-archive")
        .arg(&base)
        .arg(name));
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    ok(Command::new("tar")
        .arg("-xf")
        .arg(&base)
        .arg("-C")
        .arg(&tree));

    let layer_root = work.path().join("layer");
    std::fs::create_dir(&layer_root).unwrap();
    for (path, target) in links {
        std::os::unix::fs::symlink(target, layer_root.join(path)).unwrap();
    }
    let layer = tree.join("hostile.tar");
    ok(Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
        .arg(&layer)
        .arg("-C")
        .arg(&layer_root)
        .args(links.iter().map(|(p, _)| *p)));
    let diff_id = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(&layer).unwrap()))
    );

    let manifest_path = tree.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let config_name = manifest[0]["Config"].as_str().unwrap().to_string();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.join(&config_name)).unwrap()).unwrap();
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(diff_id.into());
    std::fs::remove_file(tree.join(&config_name)).unwrap();
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", hex::encode(Sha256::digest(&config_bytes)));
    std::fs::write(tree.join(&config_name), config_bytes).unwrap();
    manifest[0]["Config"] = config_name.into();
    manifest[0]["Layers"]
        .as_array_mut()
        .unwrap()
        .push("hostile.tar".into());
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let archive = work.path().join("hostile-image.tar");
    ok(Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&tree)
        .arg("."));
    env.ok(&["image", "load", "-i", archive.to_str().unwrap()]);
}

/// Entries of a host directory (the sentinel must stay empty).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Mount points at or under `dir` in the host's mount table.
fn mounts_at(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| Path::new(mp).starts_with(dir))
        .map(String::from)
        .collect()
}

#[test]
fn image_dev_symlink_to_the_host_is_harmless() {
    require_root!();
    let env = Env::new("escdev");
    let sentinel = tempfile::tempdir().unwrap();
    load_image_with_links(
        &env,
        "hostile-dev:1",
        &[("dev", sentinel.path().to_str().unwrap())],
    );
    env.write(
        "compose.yaml",
        "services:\n  c:\n    image: hostile-dev:1\n    command: [\"sh\", \"-c\", \"ls /dev; echo done\"]\n",
    );
    let out = env.berth(&["up", "-d"]);
    println!("up: {}\n{}", out.status, util::text(&out.stderr).trim_end());
    if out.status.success() {
        let logs = env.ok(&["logs", "-f", "c"]);
        println!("{logs}");
    }
    // Started with our /dev or refused: either way, nothing happened on the host.
    assert!(
        mounts_at(sentinel.path()).is_empty(),
        "a mount landed on the host"
    );
    assert_eq!(entries(sentinel.path()), Vec::<String>::new());
    env.ok(&["down", "-t", "0"]);
    assert!(mounts_at(sentinel.path()).is_empty());
    assert!(entries(sentinel.path()).is_empty());
}

#[test]
fn image_proc_symlink_to_the_host_is_harmless() {
    require_root!();
    let env = Env::new("escproc");
    let sentinel = tempfile::tempdir().unwrap();
    load_image_with_links(
        &env,
        "hostile-proc:1",
        &[("proc", sentinel.path().to_str().unwrap())],
    );
    env.write(
        "compose.yaml",
        "services:\n  c:\n    image: hostile-proc:1\n    command: [\"sh\", \"-c\", \"echo 1 > /proc/sys/kernel/sysrq; echo done\"]\n",
    );
    let out = env.berth(&["up", "-d"]);
    println!("up: {}\n{}", out.status, util::text(&out.stderr).trim_end());
    if out.status.success() {
        let _ = env.ok(&["logs", "-f", "c"]);
    }
    assert!(
        mounts_at(sentinel.path()).is_empty(),
        "a mount landed on the host"
    );
    assert!(entries(sentinel.path()).is_empty());
}

#[test]
fn workdir_through_a_leaked_fd_stays_inside() {
    require_root!();
    // CVE-2024-21626: `working_dir: /proc/self/fd/N` must not give a cwd on the host. Each
    // N either fails to start or runs in a directory inside the container.
    let env = Env::new("esccwd");
    let container_root = "bin dev etc home proc root sbin sys tmp usr var";
    for n in (3..12)
        .map(|n| format!("/proc/self/fd/{n}"))
        .chain(["/../../..".into()])
    {
        env.write(
            "compose.yaml",
            &format!(
                "services:\n  c:\n    image: busybox\n    working_dir: {n}\n    command: [\"sh\", \"-c\", \"echo cwd=$$(pwd); echo root=$$(ls ../../../../../ | tr '\\\\n' ' ')\"]\n"
            ),
        );
        let up = env.berth(&["up", "-d"]);
        if up.status.success() {
            let logs = env.ok(&["logs", "-f", "c"]);
            println!("{n}: {}", logs.trim_end());
            let root = logs.split("root=").nth(1).unwrap_or("").trim();
            assert_eq!(root, container_root, "{n}: outside the container:\n{logs}");
            assert!(!logs.contains("cgroup"), "{n}: {logs}");
        } else {
            println!(
                "{n}: refused: {}",
                util::text(&up.stderr).lines().last().unwrap_or("")
            );
        }
        env.ok(&["down", "-t", "0"]);
    }
}
