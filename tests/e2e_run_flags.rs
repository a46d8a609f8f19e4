//! `berth run` flags docker compose run has beyond the basics: `--cap-add`/`--cap-drop`,
//! `--env-from-file` (with `-e` winning), `--pull`, `--build`, `--quiet-pull`.
mod util;
use util::Env;

#[test]
fn run_takes_capabilities_env_files_and_pull_and_build_flags() {
    require_root!();
    let env = Env::new("runflags");
    env.write(
        "compose.yaml",
        "services:\n  box:\n    image: busybox\n  built:\n    image: runflags-built:1\n    build:\n      dockerfile_inline: |\n        FROM busybox\n        RUN echo one > /built\n",
    );
    env.write("vars.env", "A=from-file\nB=from-file\n");
    let out = env.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "CHOWN",
        "--cap-add",
        "NET_ADMIN",
        "--env-from-file",
        "vars.env",
        "-e",
        "B=from-flag",
        "box",
        "sh",
        "-c",
        "echo $A $B; grep CapEff /proc/self/status",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("from-file from-flag"), "{out}");
    let caps =
        u64::from_str_radix(lines.next().unwrap().split_whitespace().last().unwrap(), 16).unwrap();
    assert_eq!(caps & 1, 0, "CHOWN kept: {caps:x}");
    assert_ne!(caps & (1 << 12), 0, "no NET_ADMIN: {caps:x}");

    // --pull never with the image present is fine; with a missing one it fails.
    env.ok(&["run", "--rm", "--pull", "never", "box", "true"]);
    let err = env.fails(&["run", "--rm", "--pull", "bogus", "box", "true"]);
    assert!(err.contains("--pull"), "{err}");
    // The image is built when missing; --build builds it again (here: the changed file).
    assert_eq!(
        env.ok(&["run", "--rm", "--quiet-pull", "built", "cat", "/built"]),
        "one\n"
    );
    env.write(
        "compose.yaml",
        "services:\n  box:\n    image: busybox\n  built:\n    image: runflags-built:1\n    build:\n      dockerfile_inline: |\n        FROM busybox\n        RUN echo two > /built\n",
    );
    assert_eq!(env.ok(&["run", "--rm", "built", "cat", "/built"]), "one\n");
    assert_eq!(
        env.ok(&["run", "--rm", "--build", "built", "cat", "/built"]),
        "two\n"
    );
}

#[test]
fn a_one_off_answers_to_the_service_name_only_with_use_aliases() {
    require_root!();
    let env = Env::new("runalias");
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    command: [sleep, \"1000\"]\n  client:\n    image: busybox\n    command: [sleep, \"1000\"]\n",
    );
    env.ok(&["up", "-d"]);
    let addresses = |name: &str| {
        let out = env.berth(&["exec", "-T", "client", "nslookup", "-type=a", name]);
        util::text(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("Address:"))
            .filter(|a| a.trim().parse::<std::net::Ipv4Addr>().is_ok())
            .count()
    };
    assert_eq!(addresses("web"), 1);
    let plain = env.ok(&[
        "run",
        "-d",
        "--name",
        "oneoff-plain",
        "web",
        "sleep",
        "1000",
    ]);
    assert_eq!(plain.trim(), "oneoff-plain");
    // Its own name resolves; the service name still means the service's container only.
    assert_eq!(addresses("oneoff-plain"), 1);
    assert_eq!(addresses("web"), 1);
    env.ok(&["run", "-d", "--use-aliases", "web", "sleep", "1000"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while addresses("web") != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "--use-aliases: web is not the one-off too"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_detached_run_with_rm_is_removed_when_it_exits() {
    require_root!();
    let env = Env::new("runrmd");
    env.write(
        "compose.yaml",
        "services:\n  box:\n    image: busybox\n    volumes: [/anon]\n",
    );
    let name = env.ok(&["run", "-d", "--rm", "box", "sh", "-c", "sleep 0.5"]);
    let name = name.trim();
    assert!(env.ok(&["ps", "-a", "--format", "json"]).contains(name));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while env.ok(&["ps", "-a", "--format", "json"]).contains(name) {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} was not removed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Nothing of it is left: its directory, its mounts, its anonymous volume.
    let left = util::leftovers(env.root(), &[]);
    assert!(
        !left
            .iter()
            .any(|l| l.starts_with("containers/") || l.starts_with("mount")),
        "{left:?}"
    );
    let volumes = std::fs::read_dir(env.root().join("volumes"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(volumes, 0);
}

#[test]
fn run_creates_missing_bind_sources_like_up() {
    require_root!();
    let env = Env::new("runbind");
    env.write(
        "compose.yaml",
        "services:\n  box:\n    image: busybox\n    volumes: [./fromfile:/a]\n",
    );
    env.ok(&[
        "run",
        "--rm",
        "-v",
        "./fromflag:/b",
        "box",
        "sh",
        "-c",
        "touch /a/x /b/y",
    ]);
    assert!(env.dir.join("fromfile/x").exists());
    assert!(env.dir.join("fromflag/y").exists());
}

/// `run --rm` throws its writable layer away, so its overlay is mounted `volatile` (no sync of
/// the host filesystem at unmount); a container that is kept is not.
#[test]
fn only_throwaway_containers_get_a_volatile_root() {
    require_root!();
    let env = Env::new("volatile");
    env.write("compose.yaml", "services:\n  box:\n    image: busybox\n");
    let root_opts = |args: &[&str]| {
        let out = env.ok(args);
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some("/"))
            .unwrap_or_else(|| panic!("no / in {out}"))
            .to_string()
    };
    let mounts = ["box", "cat", "/proc/mounts"];
    let rm = root_opts(&[&["run", "--rm"][..], &mounts].concat());
    assert!(rm.contains("volatile"), "{rm}");
    let kept = root_opts(&[&["run", "--name", "kept"][..], &mounts].concat());
    assert!(!kept.contains("volatile"), "{kept}");
    env.ok(&["down", "--remove-orphans"]);
    assert!(util::leftovers(env.root(), &[]).is_empty());
}

/// The shims of this test's state root that are still running.
fn shims_of(root: &std::path::Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "__shim") && args.contains(&root) {
            found.push(args.join(" "));
        }
    }
    found
}

#[test]
fn a_run_whose_preparation_fails_leaves_no_shim_waiting() {
    require_root!();
    let env = Env::new("runearly");
    // The shim of a one-off is spawned once the container has a directory, before its network
    // is set up; the network fails here (no such container to share), after that.
    env.write(
        "compose.yaml",
        "services:\n  box:\n    image: busybox\n    network_mode: \"container:runearly-nope\"\n",
    );
    let out = env.berth(&["run", "--rm", "box", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        util::text(&out.stderr).contains("runearly-nope"),
        "{}",
        util::text(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !shims_of(env.root()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "shims left: {:?}",
            shims_of(env.root())
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // And a run that works still does.
    env.write("compose.yaml", "services:\n  box:\n    image: busybox\n");
    assert_eq!(
        env.ok(&["run", "--rm", "box", "echo", "fine"]).trim(),
        "fine"
    );
    assert!(shims_of(env.root()).is_empty());
    // (The control: a running container's shim is found.)
    env.ok(&["run", "-d", "--name", "runearly-long", "box", "sleep", "30"]);
    assert_eq!(shims_of(env.root()).len(), 1);
    env.ok(&["down", "-t", "0"]);
}
