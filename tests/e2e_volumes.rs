//! Volumes as Docker fills and mounts them: a new empty named volume gets the image's content
//! at its target (owners, modes and links kept) unless `nocopy`; `subpath` mounts a directory
//! of a volume, never through a symlink; `create_host_path: false` refuses a missing bind
//! source.
mod util;
use util::Env;

const BUILD: &str = r#"
    image: vt-seeded:1
    pull_policy: build
    build:
      dockerfile_inline: |
        FROM busybox
        RUN mkdir -p /seed/sub && echo seeded > /seed/sub/f && ln -s sub/f /seed/link && chown -R 1234:5678 /seed && chmod 750 /seed
"#;

fn compose(extra: &str) -> String {
    format!(
        r#"services:
  copy:{BUILD}    command: [sleep, "1000"]
    volumes: [filled:/seed]
  nocopy:{BUILD}    command: [sleep, "1001"]
    volumes:
      - type: volume
        source: untouched
        target: /seed
        volume: {{nocopy: true}}
  sub:{BUILD}    command: [sleep, "1002"]
    depends_on: [copy]
    volumes:
      - type: volume
        source: filled
        target: /only
        volume: {{subpath: sub}}
{extra}volumes:
  filled:
  untouched:
"#
    )
}

#[test]
fn named_volumes_are_filled_from_the_image_unless_nocopy_and_mount_subpaths() {
    require_root!();
    let env = Env::new("vt");
    env.write("compose.yaml", &compose(""));
    env.ok(&["up", "-d"]);
    let sh = |svc: &str, cmd: &str| env.ok(&["exec", "-T", svc, "sh", "-c", cmd]);
    // Copied, with the owner and mode of the image's directory and a link kept as a link.
    assert_eq!(sh("copy", "stat -c '%u:%g %a' /seed"), "1234:5678 750\n");
    assert_eq!(sh("copy", "cat /seed/sub/f"), "seeded\n");
    assert_eq!(sh("copy", "readlink /seed/link"), "sub/f\n");
    let data = env.root().join("volumes/vt_filled/_data");
    assert!(
        data.join("sub/f").is_file(),
        "not in the volume on the host"
    );
    // nocopy: left empty.
    assert_eq!(sh("nocopy", "ls -A /seed"), "");
    // subpath: that directory only.
    assert_eq!(sh("sub", "ls -A /only"), "f\n");
    assert_eq!(sh("sub", "cat /only/f"), "seeded\n");

    // A volume that is not empty is never filled again.
    sh("copy", "rm /seed/sub/f");
    env.ok(&["up", "-d", "--force-recreate", "copy"]);
    assert_eq!(sh("copy", "ls -A /seed/sub"), "");

    // A subpath through a symlink is refused when the container starts.
    sh("copy", "mkdir /seed/real && ln -s real /seed/viasymlink");
    env.write(
        "compose.yaml",
        &compose(
            r#"  evil:
    image: busybox
    command: [sleep, "1003"]
    volumes:
      - type: volume
        source: filled
        target: /x
        volume: {subpath: viasymlink}
"#,
        ),
    );
    let err = env.fails(&["up", "-d", "evil"]);
    assert!(err.contains("symbolic link"), "{err}");
}

#[test]
fn a_subpath_leaving_the_volume_and_a_missing_bind_without_create_host_path_are_errors() {
    require_root!();
    let env = Env::new("vtbad");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    volumes:\n      - type: volume\n        source: v\n        target: /x\n        volume: {subpath: ../..}\nvolumes:\n  v:\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(err.contains("subpath") && err.contains(".."), "{err}");

    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    volumes:\n      - type: bind\n        source: ./missing\n        target: /x\n        bind: {create_host_path: false}\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!env.dir.join("missing").exists());
    // The short syntax creates it, as Docker does.
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sleep, \"1000\"]\n    volumes: [./missing:/x]\n",
    );
    env.ok(&["up", "-d"]);
    assert!(env.dir.join("missing").is_dir());
}

#[test]
fn anonymous_volumes_are_filled_kept_across_a_recreate_and_removed_by_down_v() {
    require_root!();
    let env = Env::new("vtanon");
    let compose = |msg: &str| {
        format!(
            r#"services:
  app:
    image: vt-anon:1
    pull_policy: build
    build:
      dockerfile_inline: |
        FROM busybox
        RUN mkdir /declared && echo from-image > /declared/f
        VOLUME /declared
    environment: {{MSG: {msg}}}
    command: [sleep, "1000"]
    volumes: [/anon]
"#
        )
    };
    env.write("compose.yaml", &compose("one"));
    env.ok(&["up", "-d"]);
    let sh = |cmd: &str| env.ok(&["exec", "-T", "app", "sh", "-c", cmd]);
    // The image's VOLUME is a volume filled from the image; `- /anon` one of its own.
    assert_eq!(sh("cat /declared/f"), "from-image\n");
    let mounts = sh("grep -E ' /(anon|declared) ' /proc/self/mountinfo | wc -l");
    assert_eq!(mounts.trim(), "2", "not mounted: {mounts}");
    sh("echo kept > /anon/data && echo changed > /declared/f");
    let anonymous = || {
        std::fs::read_dir(env.root().join("volumes"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect::<Vec<_>>()
    };
    assert_eq!(anonymous().len(), 2, "{:?}", anonymous());

    // A recreate (the config changed) keeps them.
    env.write("compose.yaml", &compose("two"));
    env.ok(&["up", "-d"]);
    assert_eq!(sh("echo $MSG"), "two\n", "not recreated");
    assert_eq!(sh("cat /anon/data"), "kept\n");
    assert_eq!(sh("cat /declared/f"), "changed\n");
    assert_eq!(anonymous().len(), 2);

    // `run --rm` makes its own and removes them.
    env.ok(&["run", "--rm", "app", "true"]);
    assert_eq!(anonymous().len(), 2);

    // `rm -v` removes them with the container; `down -v` too.
    env.ok(&["stop", "-t", "0"]);
    env.ok(&["rm", "-f", "-v"]);
    assert!(anonymous().is_empty(), "{:?}", anonymous());
    env.ok(&["up", "-d"]);
    assert_eq!(anonymous().len(), 2);
    env.ok(&["down", "-v", "-t", "0"]);
    assert!(anonymous().is_empty(), "{:?}", anonymous());
}

#[test]
fn volumes_from_mounts_the_other_containers_volumes_with_its_mode_or_ro() {
    require_root!();
    let env = Env::new("vtfrom");
    std::fs::create_dir_all(env.dir.join("shared")).unwrap();
    env.write("shared/hello", "from-the-bind\n");
    env.write(
        "compose.yaml",
        r#"services:
  a:
    image: busybox
    command: [sh, -c, "echo from-a > /data/a; exec sleep 1000"]
    volumes: [data:/data, ./shared:/shared]
  b:
    image: busybox
    command: [sleep, "1001"]
    volumes_from: ["a:ro"]
  c:
    image: busybox
    command: [sleep, "1002"]
    volumes_from: [a]
    volumes: [./shared:/data]
  bad:
    image: busybox
    volumes_from: [nope]
    profiles: [never]
volumes:
  data:
"#,
    );
    let err = env.fails(&["--profile", "never", "up", "-d"]);
    assert!(err.contains("undefined service \"nope\""), "{err}");
    env.ok(&["up", "-d"]);
    let sh = |svc: &str, cmd: &str| env.berth(&["exec", "-T", svc, "sh", "-c", cmd]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sh("b", "test -f /data/a").status.success() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        util::text(&sh("b", "cat /data/a /shared/hello").stdout),
        "from-a\nfrom-the-bind\n"
    );
    // :ro
    assert!(!sh("b", "touch /data/x").status.success());
    // The mode of a's mounts (rw), and c's own mount at /data wins over a's.
    assert!(sh("c", "touch /shared/by-c").status.success());
    assert!(env.dir.join("shared/by-c").exists());
    assert_eq!(
        util::text(&sh("c", "cat /data/hello").stdout),
        "from-the-bind\n"
    );
}

/// Unmounts (lazily) what the propagation test mounted under its own state root.
struct Unmount(Vec<std::path::PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(p)
                .status();
        }
    }
}

#[test]
fn bind_propagation_rslave_sees_host_mounts_made_later_and_the_default_does_not() {
    require_root!();
    let env = Env::new("vtprop");
    // A shared mount of the test's own, inside its state root.
    let src = env.root().join("prop");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let mut guard = Unmount(Vec::new());
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("mount")
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount {args:?}");
    };
    let s = src.to_str().unwrap();
    run(&["--bind", s, s]);
    guard.0.push(src.clone());
    run(&["--make-shared", s]);
    env.write(
        "compose.yaml",
        &format!(
            r#"services:
  slave:
    image: busybox
    command: [sleep, "1000"]
    volumes:
      - type: bind
        source: {s}
        target: /mnt
        bind: {{propagation: rslave}}
  private:
    image: busybox
    command: [sleep, "1001"]
    volumes: ["{s}:/mnt"]
"#
        ),
    );
    env.ok(&["up", "-d"]);
    // Mounted on the host after the containers started.
    let sub = src.join("sub");
    run(&["-t", "tmpfs", "tmpfs", sub.to_str().unwrap()]);
    guard.0.push(sub.clone());
    std::fs::write(sub.join("late"), "late\n").unwrap();
    let cat = |svc: &str| env.berth(&["exec", "-T", svc, "cat", "/mnt/sub/late"]);
    assert_eq!(util::text(&cat("slave").stdout), "late\n");
    assert!(!cat("private").status.success());
    env.ok(&["down", "-t", "0"]);
    drop(guard);
}
