//! The image store end to end: `docker load` of the three archive kinds, resolving, listing,
//! shared layers, whiteouts, and rejection of corrupted content.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth::engine::image::{Digest, ImageError, ImageStore};
use serde_json::json;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/mkimage-busybox");

/// Runs scripts/mkimage-busybox; `None` (with the reason printed) when the host lacks busybox.
#[allow(clippy::print_stderr)] // a skipped test says why
fn mkimage(dir: &Path, args: &[&str], out: &str) -> Option<PathBuf> {
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipped: /bin/busybox is missing (install the package busybox-static)");
        return None;
    }
    let out = dir.join(out);
    let status = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "mkimage-busybox {args:?} failed");
    Some(out)
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let t = tempfile::tempdir().unwrap();
    let s = ImageStore::open(&t.path().join("images")).unwrap();
    (t, s)
}

fn dir_names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn loads_busybox_oci_tar_and_resolves_it() {
    let t = tempfile::tempdir().unwrap();
    let Some(tar) = mkimage(t.path(), &[], "busybox.tar") else {
        return;
    };
    let (_s, store) = store();
    assert_eq!(
        store.load_path(&tar).unwrap(),
        ["docker.io/library/busybox:latest"]
    );

    let image = store.resolve("busybox").unwrap();
    assert_eq!(
        image.reference.as_deref(),
        Some("docker.io/library/busybox:latest")
    );
    assert_eq!(image.layers.len(), 1);
    let rootfs = &image.layers[0];
    let busybox = fs::metadata(rootfs.join("bin/busybox")).unwrap();
    assert!(busybox.is_file() && busybox.permissions().mode() & 0o111 != 0);
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::metadata(rootfs.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    assert!(
        fs::read_to_string(rootfs.join("etc/passwd"))
            .unwrap()
            .contains("nobody:x:65534")
    );
    let config = image.config.config().as_ref().unwrap();
    assert_eq!(config.cmd().as_deref(), Some(&["sh".to_string()][..]));
    assert!(config.env().as_ref().unwrap()[0].starts_with("PATH=/usr/local/sbin:"));
    assert!(image.id.starts_with("sha256:") && image.id.len() == 71);

    // Every way of naming it finds the same image.
    for name in [
        "busybox:latest",
        "docker.io/library/busybox",
        "library/busybox:latest",
        &image.id,
        &image.id[7..19],
        &image.id[..19],
    ] {
        let other = store
            .resolve(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (&other.id, &other.layers),
            (&image.id, &image.layers),
            "{name}"
        );
    }
    assert_eq!(store.resolve(&image.id).unwrap().reference, None);
    let by_digest = format!("busybox@{}", image.manifest_digest);
    assert_eq!(store.resolve(&by_digest).unwrap().id, image.id);

    let rows = store.list().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].repository.as_str(), rows[0].tag.as_str()),
        ("busybox", "latest")
    );
    assert_eq!(rows[0].id, image.id);
    assert_eq!(rows[0].created.as_deref(), Some("1970-01-01T00:00:00Z"));
    assert!(rows[0].size > 500_000);

    // Loading again changes nothing.
    assert_eq!(
        store
            .load_reader(fs::File::open(&tar).unwrap())
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.list().unwrap(), rows);
}

#[test]
fn docker_archive_and_oci_dir_share_layers() {
    let t = tempfile::tempdir().unwrap();
    let Some(docker) = mkimage(t.path(), &["--docker-archive"], "docker.tar") else {
        return;
    };
    let oci_dir = mkimage(t.path(), &["--oci-dir"], "layout").unwrap();
    let (_s, store) = store();
    assert_eq!(
        store.load_path(&docker).unwrap(),
        ["docker.io/library/busybox:latest"]
    );
    let from_docker = store.resolve("busybox").unwrap();
    assert!(from_docker.layers[0].join("bin/busybox").is_file());

    let named = t.path().join("named");
    let status = Command::new("bash")
        .args([SCRIPT, "--oci-dir"])
        .arg(&named)
        .arg("localhost:5000/a/b:v1")
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(store.load_path(&named).unwrap(), ["localhost:5000/a/b:v1"]);
    assert_eq!(
        store.load_path(&oci_dir).unwrap(),
        ["docker.io/library/busybox:latest"]
    );
    let from_oci = store.resolve("localhost:5000/a/b:v1").unwrap();
    assert_eq!(from_oci.id, from_docker.id, "same config, same image id");
    assert_eq!(
        from_oci.layers, from_docker.layers,
        "same diff id, one unpacked layer"
    );
    assert_eq!(dir_names(&store.root().join("layers")).len(), 1);

    let mut rows: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|r| (r.repository, r.tag))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("<none>".to_string(), "<none>".to_string()),
            ("busybox".into(), "latest".into()),
            ("localhost:5000/a/b".into(), "v1".into()),
        ],
        "the docker-archive manifest lost its name to the OCI one"
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-built OCI layouts.

fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        if let Some(dir) = name.strip_suffix('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, dir, &[][..]).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// An OCI layout as path → content, with the given layers (uncompressed tars, stored gzipped).
struct Layout {
    files: BTreeMap<String, Vec<u8>>,
    layer_digests: Vec<Digest>,
    config: Digest,
}

fn layout(
    layers: &[Vec<u8>],
    annotations: serde_json::Value,
    diff_ids: Option<Vec<String>>,
) -> Layout {
    let mut files = BTreeMap::new();
    let mut blob = |data: Vec<u8>| {
        let d = Digest::of(&data);
        files.insert(format!("blobs/sha256/{}", d.hex()), data);
        d
    };
    let mut descs = Vec::new();
    let mut layer_digests = Vec::new();
    for l in layers {
        let gz = gzip(l);
        let size = gz.len();
        let d = blob(gz);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": size}));
        layer_digests.push(d);
    }
    let diff_ids =
        diff_ids.unwrap_or_else(|| layers.iter().map(|l| Digest::of(l).to_string()).collect());
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_size = config.len();
    let config_digest = blob(config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_size},
        "layers": descs,
    }))
    .unwrap();
    let manifest_size = manifest.len();
    let manifest_digest = blob(manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest.to_string(),
            "size": manifest_size,
            "annotations": annotations,
        }],
    });
    files.insert("index.json".into(), serde_json::to_vec(&index).unwrap());
    files.insert(
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    );
    Layout {
        files,
        layer_digests,
        config: config_digest,
    }
}

impl Layout {
    fn write_dir(&self, dir: &Path) {
        for (path, data) in &self.files {
            let p = dir.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
    }

    fn tar(&self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in &self.files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn corrupt_layer(&mut self, i: usize) {
        let key = format!("blobs/sha256/{}", self.layer_digests[i].hex());
        let data = self.files.get_mut(&key).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
    }
}

fn named(name: &str) -> serde_json::Value {
    json!({"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"})
}

fn assert_store_empty(store: &ImageStore) {
    assert_eq!(store.list().unwrap(), []);
    assert_eq!(
        dir_names(&store.root().join("blobs/sha256")),
        Vec::<String>::new()
    );
    assert_eq!(dir_names(&store.root().join("tmp")), Vec::<String>::new());
}

#[test]
fn whiteouts_in_stored_layers_and_lowest_first() {
    let l1 = layer_tar(&[("a", b"a"), ("b", b"b"), ("d/", b""), ("d/x", b"x")]);
    let l2 = layer_tar(&[
        (".wh.a", b""),
        ("d/", b""),
        ("d/.wh..wh..opq", b""),
        ("d/y", b"y"),
    ]);
    let (_s, store) = store();
    store
        .load_reader(&layout(&[l1, l2], named("wh"), None).tar()[..])
        .unwrap();
    let image = store.resolve("wh").unwrap();
    assert_eq!(image.layers.len(), 2);
    assert!(image.layers[0].join("b").is_file(), "lowest layer first");
    let a = fs::symlink_metadata(image.layers[1].join("a")).unwrap();
    assert!(a.file_type().is_char_device());
    let opaque = berth::sys::fsat::lgetxattr(&image.layers[1].join("d"), "trusted.overlay.opaque");
    assert_eq!(opaque.unwrap(), Some(b"y".to_vec()));
}

#[test]
fn corrupted_blob_is_rejected_and_nothing_stored() {
    let mut l = layout(&[layer_tar(&[("f", b"data")])], named("bad"), None);
    l.corrupt_layer(0);
    let (t, store) = store();
    let err = store.load_reader(&l.tar()[..]).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert_store_empty(&store);

    let dir = t.path().join("layout");
    l.write_dir(&dir);
    let err = store.load_path(&dir).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert_store_empty(&store);
}

#[test]
fn wrong_descriptor_size_is_rejected() {
    let mut l = layout(&[layer_tar(&[("f", b"data")])], named("bad"), None);
    let index = String::from_utf8(l.files["index.json"].clone()).unwrap();
    let index = index.replace("\"size\":", "\"size\":1");
    l.files.insert("index.json".into(), index.into_bytes());
    let (_t, store) = store();
    let err = store.load_reader(&l.tar()[..]).unwrap_err();
    assert!(matches!(err, ImageError::SizeMismatch { .. }), "{err}");
    assert_store_empty(&store);
}

#[test]
fn wrong_diff_id_fails_resolve_and_leaves_no_layer() {
    let wrong = vec![Digest::of(b"something else").to_string()];
    let l = layout(&[layer_tar(&[("f", b"data")])], named("liar"), Some(wrong));
    let (_t, store) = store();
    store.load_reader(&l.tar()[..]).unwrap();
    let err = store.resolve("liar").unwrap_err();
    assert!(matches!(err, ImageError::DiffIdMismatch { .. }), "{err}");
    assert_eq!(
        dir_names(&store.root().join("layers")),
        Vec::<String>::new()
    );
}

#[test]
fn interrupted_unpack_is_redone() {
    let layer = layer_tar(&[("f", b"data")]);
    let diff_id = Digest::of(&layer);
    let (_t, store) = store();
    store
        .load_reader(&layout(&[layer], named("x"), None).tar()[..])
        .unwrap();
    let tmp = store
        .root()
        .join("layers")
        .join(format!(".tmp-{}", diff_id.hex()));
    fs::create_dir_all(tmp.join("half")).unwrap();
    let image = store.resolve("x").unwrap();
    assert_eq!(
        image.layers[0],
        store.root().join("layers").join(diff_id.hex())
    );
    assert!(image.layers[0].join("f").is_file());
    assert!(!image.layers[0].join("half").exists());
    assert!(!tmp.exists());
}

#[test]
fn names_follow_docker_load() {
    let (_t, store) = store();
    let layer = || vec![layer_tar(&[("f", b"data")])];
    // A bare tag in ref.name is not a name: the image is loaded untagged.
    let l = layout(
        &layer(),
        json!({"org.opencontainers.image.ref.name": "latest"}),
        None,
    );
    let loaded = store.load_reader(&l.tar()[..]).unwrap();
    assert_eq!(loaded, [l.config.to_string()]);
    let rows = store.list().unwrap();
    assert_eq!(
        (rows[0].repository.as_str(), rows[0].tag.as_str()),
        ("<none>", "<none>")
    );
    // A full reference in ref.name is.
    let l = layout(
        &layer(),
        json!({"org.opencontainers.image.ref.name": "bars/busybox:latest"}),
        None,
    );
    assert_eq!(
        store.load_reader(&l.tar()[..]).unwrap(),
        ["docker.io/bars/busybox:latest"]
    );
    assert_eq!(
        store.list().unwrap().len(),
        1,
        "the untagged row is now named"
    );
    store.tag("bars/busybox", "localhost:5000/a/b:v2").unwrap();
    let row = store
        .list()
        .unwrap()
        .into_iter()
        .find(|r| r.tag == "v2")
        .unwrap();
    assert_eq!(row.repository, "localhost:5000/a/b");
    assert_eq!(row.reference.as_deref(), Some("localhost:5000/a/b:v2"));
}

#[test]
fn errors_name_their_subject() {
    let (_t, store) = store();
    let err = store.resolve("nope").unwrap_err();
    assert!(matches!(&err, ImageError::NotFound { reference } if reference == "nope"));
    assert_eq!(err.to_string(), "no such image: nope");
    let err = store.resolve("Bad/Name").unwrap_err();
    assert!(matches!(err, ImageError::InvalidReference { .. }), "{err}");
    let err = store
        .load_reader(&layer_tar(&[("f", b"x")])[..])
        .unwrap_err();
    assert!(matches!(err, ImageError::NotAnArchive { .. }), "{err}");
}

#[test]
fn ambiguous_documents_are_rejected() {
    let mut l = layout(&[layer_tar(&[("f", b"data")])], named("amb"), None);
    let index: serde_json::Value = serde_json::from_slice(&l.files["index.json"]).unwrap();
    let mut bad = index.clone();
    bad["layers"] = json!([]);
    l.files
        .insert("index.json".into(), serde_json::to_vec(&bad).unwrap());
    let (_t, store) = store();
    let err = store.load_reader(&l.tar()[..]).unwrap_err();
    assert!(matches!(err, ImageError::InvalidDocument { .. }), "{err}");
    assert_store_empty(&store);
}

#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn stored_layers_mount_as_overlayfs() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: mounting overlayfs needs root");
        return;
    }
    let l1 = layer_tar(&[("a", b"a"), ("b", b"b"), ("d/", b""), ("d/x", b"x")]);
    let l2 = layer_tar(&[
        (".wh.a", b""),
        ("d/", b""),
        ("d/.wh..wh..opq", b""),
        ("d/y", b"y"),
    ]);
    let (t, store) = store();
    store
        .load_reader(&layout(&[l1, l2], named("wh"), None).tar()[..])
        .unwrap();
    let image = store.resolve("wh").unwrap();
    let [upper, work, merged] = ["upper", "work", "merged"].map(|d| t.path().join(d));
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    let lower: Vec<String> = image
        .layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    let flags = nix::mount::MsFlags::empty();
    if let Err(e) = nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        flags,
        Some(opts.as_str()),
    ) {
        eprintln!("skipped: overlayfs mount failed here: {e}");
        return;
    }
    let seen: Vec<bool> = ["a", "b", "d/x", "d/y"]
        .iter()
        .map(|f| merged.join(f).exists())
        .collect();
    nix::mount::umount(&merged).unwrap();
    assert_eq!(seen, [false, true, false, true], "a whited out, d opaque");
}

#[test]
fn open_removes_staging_of_dead_imports_only() {
    let (_t, store) = store();
    let tmp = store.root().join("tmp");
    fs::create_dir_all(tmp.join("load-dead/x")).unwrap();
    fs::create_dir(tmp.join("load-alive")).unwrap();
    let held = fs::File::create(tmp.join("load-alive.lock")).unwrap();
    held.lock().unwrap();
    // flock locks belong to the open file description: a second open in this process conflicts.
    ImageStore::open(store.root()).unwrap();
    assert_eq!(dir_names(&tmp), ["load-alive", "load-alive.lock"]);
    drop(held);
    ImageStore::open(store.root()).unwrap();
    assert_eq!(dir_names(&tmp), Vec::<String>::new());
}
