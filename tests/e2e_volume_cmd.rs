//! `berth volume create/ls/inspect/rm/prune` and `berth volumes`, as Docker's and docker
//! compose's: a volume a container uses is never removed or pruned; `prune` without `-a`
//! removes only unused anonymous volumes.
mod util;
use util::Env;

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn create_ls_inspect_rm_with_labels_and_filters() {
    require_root!();
    let env = Env::new("vcmd");
    assert_eq!(
        env.ok(&["volume", "create", "--label", "tier=db", "vc-one"]),
        "vc-one\n"
    );
    assert_eq!(
        env.ok(&["volume", "create", "-d", "local", "vc-two"]),
        "vc-two\n"
    );
    // Creating an existing volume again is not an error (Docker's).
    env.ok(&["volume", "create", "vc-two"]);
    let anon = env.ok(&["volume", "create"]);
    let anon = anon.trim();
    assert_eq!(anon.len(), 64, "{anon}");
    let err = env.fails(&["volume", "create", "-d", "nfs", "vc-x"]);
    assert!(err.contains("plugin"), "{err}");
    let err = env.fails(&["volume", "create", "../evil"]);
    assert!(err.contains("invalid volume name"), "{err}");

    let table = env.ok(&["volume", "ls"]);
    assert_eq!(lines(&table)[0], "DRIVER    VOLUME NAME");
    assert!(table.contains("local     vc-one\n"), "{table}");
    assert!(table.contains(anon), "{table}");
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "--filter", "label=tier=db"]),
        "vc-one\n"
    );
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "--filter", "label=tier"]),
        "vc-one\n"
    );
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "--filter", "name=two"]),
        "vc-two\n"
    );
    assert_eq!(
        env.ok(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.volume.anonymous"
        ]),
        format!("{anon}\n")
    );
    let json = env.ok(&[
        "volume",
        "ls",
        "--format",
        "json",
        "--filter",
        "name=vc-one",
    ]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["Name"], "vc-one");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Labels"], "tier=db");
    assert!(
        env.fails(&["volume", "ls", "--filter", "colour=red"])
            .contains("colour")
    );
    // Go templates, with and without a table header.
    assert_eq!(
        env.ok(&[
            "volume",
            "ls",
            "--filter",
            "name=vc-",
            "--format",
            "{{.Name}}={{.Label \"tier\"}}"
        ]),
        "vc-one=db\nvc-two=\n"
    );
    assert_eq!(
        env.ok(&[
            "volume",
            "ls",
            "--filter",
            "name=vc-one",
            "--format",
            "table {{.Name}}\\t{{.Scope}}"
        ]),
        "VOLUME NAME   SCOPE\nvc-one        local\n"
    );

    let out = env.ok(&["volume", "inspect", "vc-one"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let v = &v[0];
    assert_eq!(v["Name"], "vc-one");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["tier"], "db");
    let created = v["CreatedAt"].as_str().unwrap();
    assert!(
        created.starts_with("20") && created.ends_with('Z') && created.len() == 20,
        "{v}"
    );
    let mountpoint = std::path::PathBuf::from(v["Mountpoint"].as_str().unwrap());
    assert_eq!(mountpoint, env.root().join("volumes/vc-one/_data"));
    assert!(mountpoint.is_dir());
    let err = env.fails(&["volume", "inspect", "vc-one", "vc-none"]);
    assert!(err.contains("vc-none: no such volume"), "{err}");

    assert_eq!(
        env.ok(&["volume", "rm", "vc-one", "vc-two"]),
        "vc-one\nvc-two\n"
    );
    assert!(!mountpoint.exists());
    let err = env.fails(&["volume", "rm", "vc-one"]);
    assert!(err.contains("no such volume"), "{err}");
    env.ok(&["volume", "rm", "-f", "vc-one"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]), format!("{anon}\n"));
}

#[test]
fn volumes_in_use_are_never_removed_or_pruned() {
    require_root!();
    let env = Env::new("vuse");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sleep, \"1000\"]\n    volumes: [data:/data, /anon]\n  other:\n    image: busybox\n    command: [sleep, \"1001\"]\n    volumes: [/scratch]\nvolumes:\n  data:\n",
    );
    env.ok(&["up", "-d"]);
    // Left over from elsewhere: an unused anonymous volume and an unused named one.
    let loose = env.ok(&["volume", "create"]);
    let loose = loose.trim().to_string();
    env.ok(&["volume", "create", "vuse-spare"]);

    // In use, even by a stopped container: refused with Docker's message.
    env.ok(&["stop", "-t", "0", "app"]);
    let err = env.fails(&["volume", "rm", "vuse_data"]);
    assert!(
        err.contains("remove vuse_data: volume is in use - ["),
        "{err}"
    );
    assert!(env.root().join("volumes/vuse_data/_data").is_dir());

    let dangling = env.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    assert_eq!(
        lines(&dangling),
        {
            let mut v = vec![loose.as_str(), "vuse-spare"];
            v.sort();
            v
        },
        "{dangling}"
    );

    // The project's volumes (docker compose volumes), and those of one service.
    let all = env.ok(&["volumes", "-q"]);
    assert_eq!(lines(&all).len(), 3, "{all}");
    assert!(all.contains("vuse_data\n"), "{all}");
    let other = env.ok(&["volumes", "-q", "other"]);
    assert_eq!(lines(&other).len(), 1, "{other}");
    assert!(!other.contains("vuse_data"), "{other}");
    assert!(env.ok(&["volumes"]).starts_with("DRIVER    VOLUME NAME\n"));

    // Without -f it asks first; no answer is no.
    let out = util::output_with_stdin(&mut env.command(&["volume", "prune"]), b"");
    assert!(out.status.success());
    assert!(
        util::text(&out.stderr).contains("remove anonymous local volumes"),
        "{}",
        util::text(&out.stderr)
    );
    assert!(env.ok(&["volume", "ls", "-q"]).contains(&loose));
    // prune: only the unused anonymous one goes.
    let out = env.ok(&["volume", "prune", "-f"]);
    assert!(out.starts_with("Deleted Volumes:\n"), "{out}");
    assert!(out.contains(&loose), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    let left = env.ok(&["volume", "ls", "-q"]);
    assert!(!left.contains(&loose), "{left}");
    assert!(
        left.contains("vuse-spare") && left.contains("vuse_data"),
        "{left}"
    );
    assert_eq!(lines(&left).len(), 4, "{left}");

    // prune -a: every unused volume, never one a container has.
    let out = env.ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("vuse-spare"), "{out}");
    let left = env.ok(&["volume", "ls", "-q"]);
    assert_eq!(lines(&left).len(), 3, "{left}");
    assert!(left.contains("vuse_data"), "{left}");
    // The containers still see their volumes.
    env.ok(&["start", "app"]);
    env.ok(&[
        "exec",
        "-T",
        "app",
        "sh",
        "-c",
        "echo kept > /data/f && test -d /anon",
    ]);

    // Once the containers are gone the volumes are dangling, and prune -a takes them.
    env.ok(&["down", "-t", "0"]);
    let out = env.ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("vuse_data"), "{out}");
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn subpaths_are_mounted_by_descriptor_and_symlinks_on_the_way_are_refused() {
    require_root!();
    let env = Env::new("vsub");
    let compose = |sub: &str| {
        format!(
            "services:\n  fill:\n    image: busybox\n    command: [sleep, \"1000\"]\n    volumes: [data:/v]\n  use:\n    image: busybox\n    command: [sleep, \"1001\"]\n    volumes:\n      - type: volume\n        source: data\n        target: /only\n        volume: {{subpath: {sub}}}\nvolumes:\n  data:\n"
        )
    };
    env.write("compose.yaml", &compose("real/inner"));
    env.ok(&["up", "-d", "fill"]);
    env.ok(&[
        "exec", "-T", "fill", "sh", "-c",
        "mkdir -p /v/real/inner && echo hi > /v/real/inner/f && ln -s real /v/link && ln -s / /v/root",
    ]);
    env.ok(&["up", "-d", "use"]);
    assert_eq!(env.ok(&["exec", "-T", "use", "cat", "/only/f"]), "hi\n");
    // Writes land in the volume's directory; the staging mount is gone once it started.
    env.ok(&["exec", "-T", "use", "sh", "-c", "echo back > /only/g"]);
    assert_eq!(
        env.ok(&["exec", "-T", "fill", "cat", "/v/real/inner/g"]),
        "back\n"
    );
    let staged: Vec<_> = util::leftovers(env.root(), &[])
        .into_iter()
        .filter(|l| l.contains("subpaths"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    // A restart stages it again.
    env.ok(&["restart", "-t", "0", "use"]);
    assert_eq!(env.ok(&["exec", "-T", "use", "cat", "/only/g"]), "back\n");

    // A symlink anywhere on the way (not only the last component) is refused.
    for sub in ["link/inner", "root/etc"] {
        env.write("compose.yaml", &compose(sub));
        let err = env.fails(&["up", "-d", "use"]);
        assert!(err.contains("symbolic link"), "{sub}: {err}");
    }

    // A start killed while a subpath was staged leaves it mounted in the container's dir:
    // removing the container unmounts it and never deletes the volume's files through it.
    let data = env.root().join("volumes/vsub_data/_data");
    let fill = std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|d| {
            std::fs::read_to_string(d.join("container.json"))
                .is_ok_and(|j| j.contains("vsub-fill-1"))
        })
        .unwrap();
    let staged = fill.join("subpaths/7");
    std::fs::create_dir_all(&staged).unwrap();
    let st = std::process::Command::new("mount")
        .args(["--bind"])
        .arg(data.join("real"))
        .arg(&staged)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(staged.join("inner/f").is_file());
    env.ok(&["down", "-t", "0"]);
    assert!(!fill.exists());
    assert_eq!(
        std::fs::read_to_string(data.join("real/inner/f")).unwrap(),
        "hi\n"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*env.root().to_string_lossy()), "{mounts}");
}
