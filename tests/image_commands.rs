//! Store commands end to end (root): `save` (docker-archive, oci-archive, stdout) and `load`
//! round trips, `import` with `--change`, `commit` of a running container (whiteouts
//! included), `images` filters and `--format json`, `system df`.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use berth::engine::image::ImageStore;
use std::os::unix::fs::FileTypeExt;
use std::time::{Duration, Instant};
use util::Env;

fn inspect(env: &Env, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["image", "inspect", name])).unwrap();
    v[0].clone()
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn save_and_load_round_trip() {
    require_root!();
    let env = Env::new("sl");
    let id = inspect(&env, "busybox")["Id"].clone();
    env.ok(&["tag", "busybox", "example.com/team/bb:v1"]);
    for format in ["docker-archive", "oci-archive"] {
        let out = env.dir.join(format!("{format}.tar"));
        env.ok(&[
            "save",
            "--format",
            format,
            "-o",
            out.to_str().unwrap(),
            "busybox",
            "example.com/team/bb:v1",
        ]);
        env.ok(&["rmi", "-f", "busybox", "example.com/team/bb:v1"]);
        assert!(env.berth(&["image", "inspect", "busybox"]).status.code() != Some(0));
        let loaded = env.ok(&["load", "-i", out.to_str().unwrap()]);
        assert!(loaded.contains("busybox"), "{format}: {loaded}");
        assert_eq!(inspect(&env, "busybox")["Id"], id, "{format}");
        assert_eq!(
            inspect(&env, "example.com/team/bb:v1")["Id"],
            id,
            "{format}"
        );
    }
    // To stdout, and an unknown image is an error naming it.
    let out = env.berth(&["save", "busybox"]);
    assert!(out.status.success());
    let file = env.dir.join("stdout.tar");
    std::fs::write(&file, &out.stdout).unwrap();
    env.ok(&["rmi", "-f", "busybox"]);
    env.ok(&["load", "-i", file.to_str().unwrap()]);
    assert_eq!(inspect(&env, "busybox")["Id"], id);
    let err = env.fails(&["save", "-o", "x.tar", "nosuch:1"]);
    assert!(err.contains("nosuch"), "{err}");
    assert!(!env.dir.join("x.tar").exists());
}

#[test]
fn save_to_an_oci_layout_directory_and_load_it() {
    require_root!();
    let env = Env::new("sld");
    let id = inspect(&env, "busybox")["Id"].clone();
    env.ok(&["tag", "busybox", "example.com/team/bb:v2"]);
    // `-o DIR/` and `--format oci-dir -o DIR` write a layout directory.
    let a = env.dir.join("a");
    let b = env.dir.join("b");
    env.ok(&["save", "-o", &format!("{}/", a.display()), "busybox"]);
    env.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        b.to_str().unwrap(),
        "example.com/team/bb:v2",
    ]);
    for dir in [&a, &b] {
        assert!(dir.join("oci-layout").is_file(), "{}", dir.display());
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let manifest = index["manifests"][0]["digest"].as_str().unwrap();
        let hex = manifest.strip_prefix("sha256:").unwrap();
        assert!(dir.join("blobs/sha256").join(hex).is_file());
    }
    // The default format keeps Docker's manifest.json, oci-dir is the OCI layout alone.
    assert!(a.join("manifest.json").is_file());
    assert!(!b.join("manifest.json").exists());
    // Another OCI tool reads it, when installed.
    if std::path::Path::new("/usr/bin/skopeo").exists() {
        let out = std::process::Command::new("/usr/bin/skopeo")
            .args(["inspect", "--config", &format!("oci:{}", b.display())])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", util::text(&out.stderr));
    }
    // Round trip.
    env.ok(&["rmi", "-f", "busybox", "example.com/team/bb:v2"]);
    env.ok(&["load", "-i", a.to_str().unwrap()]);
    env.ok(&["load", "-i", b.to_str().unwrap()]);
    assert_eq!(inspect(&env, "busybox")["Id"], id);
    assert_eq!(inspect(&env, "example.com/team/bb:v2")["Id"], id);
    // A directory with something in it is refused and left as it was; oci-dir needs -o.
    let err = env.fails(&["save", "-o", a.to_str().unwrap(), "busybox"]);
    assert!(err.contains("not empty"), "{err}");
    assert!(a.join("manifest.json").is_file());
    let err = env.fails(&["save", "--format", "oci-dir", "busybox"]);
    assert!(err.contains("-o"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(&env.dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A small rootfs tarball: `etc/greeting` and an empty `tmp/`.
fn rootfs_tar(path: &std::path::Path, gzip: bool) {
    let mut data = Vec::new();
    {
        let mut b = tar::Builder::new(&mut data);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o1777);
        h.set_size(0);
        b.append_data(&mut h, "tmp", std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(6);
        b.append_data(&mut h, "etc/greeting", &b"hello\n"[..])
            .unwrap();
        b.finish().unwrap();
    }
    if gzip {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        data = e.finish().unwrap();
    }
    std::fs::write(path, data).unwrap();
}

#[test]
fn import_with_changes() {
    require_root!();
    let env = Env::new("imp");
    let plain = env.dir.join("root.tar");
    let gz = env.dir.join("root.tar.gz");
    rootfs_tar(&plain, false);
    rootfs_tar(&gz, true);
    let id = env.ok(&[
        "import",
        "-c",
        "CMD [\"/bin/sh\"]",
        "-c",
        "ENV A=1",
        "-c",
        "LABEL team=ops",
        "-m",
        "from a test",
        plain.to_str().unwrap(),
        "imported:1",
    ]);
    let i = inspect(&env, "imported:1");
    assert_eq!(i["Id"], id.trim());
    assert_eq!(i["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert!(i["Config"]["Env"].to_string().contains("A=1"), "{i}");
    assert_eq!(i["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    // The same content compressed is the same layer.
    env.ok(&["import", gz.to_str().unwrap(), "imported:gz"]);
    assert_eq!(
        inspect(&env, "imported:gz")["RootFS"]["Layers"],
        i["RootFS"]["Layers"]
    );
    let store = ImageStore::open(&env.root().join("images")).unwrap();
    let img = store.resolve("imported:gz").unwrap();
    assert_eq!(
        std::fs::read_to_string(img.layers[0].join("etc/greeting")).unwrap(),
        "hello\n"
    );
    // Not a tarball; an instruction --change does not allow.
    env.write("junk", "not a tar at all");
    assert!(!env.fails(&["import", "junk", "bad:1"]).is_empty());
    let err = env.fails(&["import", "-c", "RUN true", plain.to_str().unwrap()]);
    assert!(err.contains("RUN is not allowed"), "{err}");

    // Filters: label, reference, dangling; --format json.
    let rows = json_lines(&env.ok(&["images", "--format", "json", "--filter", "label=team=ops"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["Repository"], "imported");
    let rows = json_lines(&env.ok(&["images", "--format", "json", "--filter", "reference=imp*"]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    let rows = json_lines(&env.ok(&["images", "--format", "json", "busybox"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        env.ok(&["images", "-q", "--filter", "dangling=true"])
            .trim()
            .is_empty()
    );
    env.ok(&["import", plain.to_str().unwrap()]);
    assert_eq!(
        env.ok(&["images", "-q", "--filter", "dangling=true"])
            .lines()
            .count(),
        1
    );
    assert!(!env.fails(&["images", "--filter", "colour=red"]).is_empty());
}

#[test]
fn commit_a_running_container() {
    require_root!();
    let env = Env::new("cm");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sh, -c, 'echo hi > /created; rm /bin/ls; touch /ready; sleep 1000']\n",
    );
    env.ok(&["up", "-d"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env
        .berth(&["exec", "-T", "app", "test", "-e", "/ready"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the container never got ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = env.ok(&[
        "commit",
        "-m",
        "snapshot",
        "-a",
        "Tester <t@example.com>",
        "-c",
        "CMD [\"cat\", \"/created\"]",
        "cm-app-1",
        "committed:1",
    ]);
    let i = inspect(&env, "committed:1");
    assert_eq!(i["Id"], id.trim());
    assert_eq!(i["Config"]["Cmd"], serde_json::json!(["cat", "/created"]));
    let history = env.ok(&["image", "history", "--format", "json", "committed:1"]);
    assert!(history.contains("berth commit"), "{history}");
    // The new layer holds the new file and the deletion as an overlay whiteout.
    let store = ImageStore::open(&env.root().join("images")).unwrap();
    let img = store.resolve("committed:1").unwrap();
    let top = img.layers.last().unwrap();
    assert_eq!(
        std::fs::read_to_string(top.join("created")).unwrap(),
        "hi\n"
    );
    let ls = std::fs::symlink_metadata(top.join("bin/ls")).unwrap();
    assert!(ls.file_type().is_char_device(), "bin/ls is a whiteout");

    // system df counts the images and the running container.
    let df = json_lines(&env.ok(&["system", "df", "--format", "json"]));
    let row = |t: &str| df.iter().find(|r| r["Type"] == t).unwrap().clone();
    assert_eq!(row("Images")["TotalCount"], 2);
    assert_eq!(row("Images")["Active"], 1);
    assert_eq!(row("Containers")["TotalCount"], 1);
    assert_eq!(row("Containers")["Active"], 1);
    let err = env.fails(&["commit", "nosuch"]);
    assert!(err.contains("no such container"), "{err}");
}
