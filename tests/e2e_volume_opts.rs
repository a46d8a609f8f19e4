//! Volumes with the local driver's options (`volume create -o`, compose `driver_opts`): the
//! filesystem they describe is mounted on the volume while containers use it and unmounted
//! when the last one stops, as Docker's local driver does; `volume rm`/`prune` never remove a
//! volume an `up` or `run` is about to mount.
mod util;
use std::path::Path;
use std::time::Duration;
use util::Env;

/// The mount points below `root` (this test's state root) in the host's mount table.
fn mounts_under(root: &Path) -> Vec<String> {
    let root = std::fs::canonicalize(root).unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| Path::new(mp).starts_with(&root))
        .map(String::from)
        .collect()
}

/// The line of `/proc/mounts` for `path`, if something is mounted there.
fn mount_line(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let want = path.to_str()?;
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(want))
        .map(String::from)
}

#[test]
fn a_tmpfs_volume_is_mounted_while_containers_use_it() {
    require_root!();
    let env = Env::new("vopt");
    assert_eq!(
        env.ok(&[
            "volume",
            "create",
            "-o",
            "type=tmpfs",
            "-o",
            "device=tmpfs",
            "--opt",
            "o=size=2m,uid=1234",
            "vopt-tmp",
        ]),
        "vopt-tmp\n"
    );
    let out = env.ok(&["volume", "inspect", "vopt-tmp"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v[0]["Options"],
        serde_json::json!({"device": "tmpfs", "o": "size=2m,uid=1234", "type": "tmpfs"}),
        "{out}"
    );
    let data = env.root().join("volumes/vopt-tmp/_data");
    assert_eq!(
        mount_line(&data),
        None,
        "mounted only once a container uses it"
    );

    env.write(
        "compose.yaml",
        "services:\n  a:\n    image: busybox\n    command: [sleep, \"1000\"]\n    volumes: [tv:/t]\n  b:\n    image: busybox\n    command: [sleep, \"1001\"]\n    volumes: [tv:/t]\nvolumes:\n  tv:\n    name: vopt-tmp\n    external: true\n",
    );
    env.ok(&["up", "-d"]);
    let line = mount_line(&data).expect("the volume's tmpfs is mounted");
    assert!(
        line.starts_with("tmpfs ") && line.contains(" tmpfs ") && line.contains("size=2048k"),
        "{line}"
    );
    // The container sees the tmpfs, with its owner, and shares it with the other.
    assert_eq!(
        env.ok(&[
            "exec",
            "-T",
            "a",
            "sh",
            "-c",
            "stat -c %u /t && echo hi > /t/f"
        ]),
        "1234\n"
    );
    assert_eq!(env.ok(&["exec", "-T", "b", "cat", "/t/f"]), "hi\n");
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "hi\n");
    let inside = env.ok(&["exec", "-T", "b", "grep", " /t ", "/proc/mounts"]);
    assert!(
        inside.contains("tmpfs") && inside.contains("size=2048k"),
        "{inside}"
    );

    // One container stopped: the other still uses it, it stays.
    env.ok(&["stop", "-t", "0", "a"]);
    assert!(mount_line(&data).is_some());
    assert_eq!(env.ok(&["exec", "-T", "b", "cat", "/t/f"]), "hi\n");
    // The last one stopped: unmounted (by its shim, with no berth command waiting for it).
    env.ok(&["kill", "b"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mount_line(&data).is_some() {
        assert!(std::time::Instant::now() < deadline, "never unmounted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!data.join("f").exists(), "the tmpfs's content went with it");
    // Started again: a fresh tmpfs, as Docker's.
    env.ok(&["start", "b"]);
    assert!(mount_line(&data).is_some());
    assert_eq!(env.ok(&["exec", "-T", "b", "ls", "-A", "/t"]), "");

    // A volume in use is never removed; once unused it goes, and nothing is left mounted.
    let err = env.fails(&["volume", "rm", "vopt-tmp"]);
    assert!(err.contains("volume is in use"), "{err}");
    // Even when the shim of its last user was killed (its container runs on meanwhile),
    // `down` lets go of it.
    let shim = std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .filter_map(|e| {
            let st: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.ok()?.path().join("state.json")).ok()?)
                    .ok()?;
            (st["status"] == "running").then(|| st["shim_pid"].as_i64())?
        })
        .next()
        .expect("b's shim");
    // The shim this test started (through berth), by its pid.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(mount_line(&data).is_some());
    env.ok(&["down", "-t", "0"]);
    assert_eq!(mount_line(&data), None);
    env.ok(&["volume", "rm", "vopt-tmp"]);
    assert!(!env.root().join("volumes/vopt-tmp").exists());
    assert_eq!(mounts_under(env.root()), Vec::<String>::new());
}

#[test]
fn compose_driver_opts_bind_a_host_directory_and_down_v_keeps_its_content() {
    require_root!();
    let env = Env::new("vbind");
    let host = env.dir.join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("mine"), "host file\n").unwrap();
    let etc = env.dir.join("etcdir");
    std::fs::create_dir(&etc).unwrap();
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: busybox\n    command: [sleep, \"1000\"]\n    volumes: [data:/data, conf:/etc, ro:/ro]\nvolumes:\n  data:\n    driver: local\n    driver_opts:\n      type: none\n      o: bind\n      device: {host}\n  conf:\n    driver_opts: {{type: none, o: bind, device: {etc}}}\n  ro:\n    driver_opts: {{type: none, o: \"bind,ro\", device: {host}}}\n",
            host = host.display(),
            etc = etc.display()
        ),
    );
    env.ok(&["up", "-d"]);
    let out = env.ok(&["volume", "inspect", "vbind_data"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["Options"]["device"], host.to_str().unwrap(), "{out}");
    assert_eq!(v[0]["Options"]["o"], "bind", "{out}");
    // The container works in the host directory.
    assert_eq!(
        env.ok(&[
            "exec",
            "-T",
            "app",
            "sh",
            "-c",
            "cat /data/mine && echo new > /data/made"
        ]),
        "host file\n"
    );
    assert_eq!(std::fs::read_to_string(host.join("made")).unwrap(), "new\n");
    // `o: bind,ro`: the same directory, read-only.
    let out = env.berth(&["exec", "-T", "app", "sh", "-c", "echo x > /ro/nope"]);
    assert!(!out.status.success());
    assert!(
        util::text(&out.stderr).contains("Read-only file system"),
        "{}",
        util::text(&out.stderr)
    );
    assert_eq!(env.ok(&["exec", "-T", "app", "cat", "/ro/made"]), "new\n");
    // An empty bound directory gets the image's content at the target (Docker's copy-up).
    assert!(
        std::fs::read_to_string(etc.join("passwd"))
            .unwrap()
            .starts_with("root:x:0:0:"),
        "the image's /etc was copied into the bound directory"
    );

    // `down -v` removes the volumes, unmounting them first: the host's files stay.
    env.ok(&["down", "-v", "-t", "0"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
    assert_eq!(mounts_under(env.root()), Vec::<String>::new());
    let proc_mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let root = std::fs::canonicalize(env.root()).unwrap();
    assert!(
        !proc_mounts.contains(root.to_str().unwrap()),
        "{proc_mounts}"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("mine")).unwrap(),
        "host file\n"
    );
    assert!(host.join("made").is_file() && etc.join("passwd").is_file());
}

#[test]
fn bad_volume_options_are_refused_naming_the_volume() {
    require_root!();
    let env = Env::new("vbad");
    let err = env.fails(&["volume", "create", "-o", "colour=red", "vbad-a"]);
    assert!(
        err.contains("volume vbad-a") && err.contains("invalid option: \"colour\""),
        "{err}"
    );
    let err = env.fails(&["volume", "create", "-o", "type=tmpfs", "vbad-a"]);
    assert!(
        err.contains("volume vbad-a") && err.contains("missing required option: \"device\""),
        "{err}"
    );
    let err = env.fails(&[
        "volume",
        "create",
        "-o",
        "device=x",
        "-o",
        "o=remount",
        "vbad-a",
    ]);
    assert!(
        err.contains("volume vbad-a") && err.contains("remount"),
        "{err}"
    );
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");

    // In a compose file: `up` fails before anything is made.
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sleep, \"1000\"]\n    volumes: [data:/data]\nvolumes:\n  data:\n    driver_opts: {type: tmpfs, size: 10m}\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("volume vbad_data") && err.contains("\"size\""),
        "{err}"
    );
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    volumes: [data:/data]\nvolumes:\n  data:\n    driver: nfs\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("create vbad_data") && err.contains("plugin \"nfs\" not found"),
        "{err}"
    );
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");

    // Options the kernel refuses are known when the volume is first mounted: the start fails
    // naming the volume, and nothing stays mounted.
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sleep, \"1000\"]\n    volumes:\n      - {type: volume, source: data, target: /data, volume: {nocopy: true}}\nvolumes:\n  data:\n    driver_opts: {type: nosuchfs, device: nothing}\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("volume vbad_data") && err.contains("nosuchfs"),
        "{err}"
    );
    env.ok(&["down", "-v", "-t", "0"]);
    // The same when the image's content is first copied into it.
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sleep, \"1000\"]\n    volumes: [data:/etc]\nvolumes:\n  data:\n    driver_opts: {type: tmpfs, device: tmpfs, o: \"size=zz\"}\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("volume vbad_data: mounting tmpfs") && err.contains("size=zz"),
        "{err}"
    );
    env.ok(&["down", "-v", "-t", "0"]);
    assert_eq!(mounts_under(env.root()), Vec::<String>::new());
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn volume_rm_waits_for_an_up_about_to_mount_the_volume_and_refuses_it() {
    require_root!();
    let env = Env::new("vlock");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sleep, \"1000\"]\n    volumes: [data:/data]\nvolumes:\n  data:\n",
    );
    env.ok(&["volume", "create", "vlock_data"]);
    // An `up` that ensured the volume and has not saved its container yet holds this lock
    // shared; the test stands in for it.
    let lock_path = env.root().join("run/locks/volumes.lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let held = std::fs::File::create(&lock_path).unwrap();
    held.lock_shared().unwrap();
    let mut rm = env
        .command(&["volume", "rm", "vlock_data"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(rm.try_wait().unwrap().is_none(), "rm waits for the lock");
    assert!(env.root().join("volumes/vlock_data/_data").is_dir());
    // Meanwhile the `up` saves its container (another `up` shares the lock).
    env.ok(&["up", "-d"]);
    drop(held);
    let out = rm.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = util::text(&out.stderr);
    assert!(err.contains("remove vlock_data: volume is in use"), "{err}");
    assert_eq!(
        env.ok(&[
            "exec",
            "-T",
            "app",
            "sh",
            "-c",
            "echo ok > /data/f && cat /data/f"
        ]),
        "ok\n"
    );

    // And for real: `prune -a` racing `up`s never takes a volume under them.
    env.ok(&["down", "-t", "0"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let stop = stop.clone();
        let mut cmd = env.command(&["volume", "prune", "-a", "-f"]);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = cmd.output().unwrap();
                assert!(out.status.success(), "{}", util::text(&out.stderr));
                n += 1;
            }
            n
        })
    };
    for _ in 0..4 {
        env.ok(&["up", "-d"]);
        env.ok(&["exec", "-T", "app", "sh", "-c", "echo ok > /data/f"]);
        env.ok(&["down", "-t", "0"]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(pruner.join().unwrap() > 0);
}

#[test]
fn a_restarted_container_gets_its_volume_mounted_again_without_any_berth_command() {
    require_root!();
    let env = Env::new("vrst");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    restart: always\n    command: [sh, -c, \"grep ' /t ' /proc/mounts > /dev/null && echo mounted; ls /t; touch /t/run; sleep 1\"]\n    volumes: [scratch:/t]\nvolumes:\n  scratch:\n    driver_opts: {type: tmpfs, device: tmpfs, o: size=1m}\n",
    );
    env.ok(&["up", "-d"]);
    // Each run finds the tmpfs mounted, fresh (Docker unmounts it between runs too).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let logs = env.ok(&["logs", "--no-log-prefix", "app"]);
        if logs.matches("mounted").count() >= 3 {
            assert!(!logs.contains("run\n"), "{logs}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{logs}");
        std::thread::sleep(Duration::from_millis(200));
    }
    env.ok(&["down", "-v", "-t", "0"]);
    assert_eq!(mounts_under(env.root()), Vec::<String>::new());
}
