//! Pull and push against a real registry (Debian's `docker-registry`, the CNCF distribution
//! server) on 127.0.0.1: round trip, multi-platform index, cross-repository mount, a corrupted
//! blob, an interrupted transfer, and login/logout with htpasswd basic auth over TLS.
#![allow(clippy::print_stderr)] // skipped tests say why

mod registry_util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use berth::engine::image::{ImageError, ImageStore};
use berth::engine::registry::{BlobEvent, IndexEntry, Platform, Quiet, RegistryError};
use registry_util::{Proxy, Recorder, Registry, config, creds, noise, oci_layout, rt};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn store(dir: &Path, name: &str) -> ImageStore {
    ImageStore::open(&dir.join(name).join("images")).unwrap()
}

/// A store holding a synthetic two-layer image named `name`.
fn store_with_image(dir: &Path, name: &str, arch: &str, seed: u64, big: usize) -> ImageStore {
    let layout = dir.join(format!("layout-{arch}-{seed}"));
    oci_layout(
        &layout,
        arch,
        &[
            vec![("etc/base", noise(seed, 1000))],
            vec![("data/blob", noise(seed + 1, big))],
        ],
    );
    let s = store(dir, "src");
    let loaded = s.load_path(&layout).unwrap();
    s.tag(&loaded[0], name).unwrap();
    s
}

#[test]
fn push_then_pull_round_trip() {
    require_registry!();
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path());
    let name = format!("{}/round/trip:1", reg.host);
    let src = store_with_image(t.path(), &name, "amd64", 1, 200_000);
    let rt = rt();
    let pushed = rt.block_on(src.push_with(&cfg, &name, &Quiet)).unwrap();
    assert!(pushed.uploaded > 200_000);

    let dst = store(t.path(), "dst");
    let rec = Recorder::default();
    let got = rt.block_on(dst.pull_with(&cfg, &name, None, &rec)).unwrap();
    assert_eq!(got.image.manifest_digest, pushed.digest.to_string());
    assert_eq!(got.image.id, src.resolve(&name).unwrap().id);
    assert_eq!(
        got.repo_digest,
        format!("{}/round/trip@{}", reg.host, pushed.digest)
    );
    assert_eq!(got.unpacked_layers, 2);
    let top = got.image.layers.last().unwrap();
    assert_eq!(fs::read(top.join("data/blob")).unwrap(), noise(2, 200_000));

    // Everything is local now: a second pull transfers nothing.
    let rec = Recorder::default();
    let again = rt.block_on(dst.pull_with(&cfg, &name, None, &rec)).unwrap();
    assert_eq!(again.downloaded, 0);
    assert_eq!(rec.count(|e| *e == BlobEvent::Exists), 2);

    // By digest, as docker records it.
    let by_digest = format!("{}/round/trip@{}", reg.host, pushed.digest);
    let fresh = store(t.path(), "fresh");
    let img = rt
        .block_on(fresh.pull_with(&cfg, &by_digest, None, &Quiet))
        .unwrap();
    assert_eq!(img.image.manifest_digest, pushed.digest.to_string());
    assert!(fresh.resolve(&by_digest).is_ok());

    // A digest from elsewhere is refused.
    let wrong = format!("{}/round/trip@sha256:{}", reg.host, "0".repeat(64));
    assert!(
        rt.block_on(fresh.pull_with(&cfg, &wrong, None, &Quiet))
            .is_err()
    );
}

#[test]
fn cli_tag_push_pull() {
    require_registry!();
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let name = format!("{}/cli/img:2", reg.host);
    let layout = t.path().join("layout");
    oci_layout(&layout, "amd64", &[vec![("hello", b"world".to_vec())]]);
    let berth = |root: &str, args: &[&str]| {
        let out = Command::new(BERTH)
            .arg("--root")
            .arg(t.path().join(root))
            .args(args)
            .env("DOCKER_CONFIG", t.path().join("docker"))
            .env("BERTH_CERTS_D", t.path().join("certs.d"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let loaded = berth("a", &["load", "-i", layout.to_str().unwrap()]);
    let id = loaded.trim().rsplit(' ').next().unwrap().to_owned();
    berth("a", &["tag", &id, &name]);
    berth("a", &["push", "--progress", "plain", &name]);
    let out = berth("b", &["pull", &name]);
    assert_eq!(out.trim(), name);
    let images = berth("b", &["images"]);
    assert!(
        images.contains(&format!("{}/cli/img", reg.host)),
        "{images}"
    );
}

#[test]
fn multi_platform_index_picks_the_platform() {
    require_registry!();
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path());
    let amd = store_with_image(t.path(), "local/multi:amd64", "amd64", 10, 1000);
    let arm_layout = t.path().join("arm");
    let arm_id = oci_layout(&arm_layout, "arm64", &[vec![("arch", b"arm64".to_vec())]]);
    let loaded = amd.load_path(&arm_layout).unwrap();
    amd.tag(&loaded[0], "local/multi:arm64").unwrap();
    let name = format!("{}/multi/app:1", reg.host);
    let entries = [
        IndexEntry {
            image: "local/multi:amd64".into(),
            platform: Platform::parse("linux/amd64").unwrap(),
        },
        IndexEntry {
            image: "local/multi:arm64".into(),
            platform: Platform::parse("linux/arm64/v8").unwrap(),
        },
    ];
    let rt = rt();
    let index = rt
        .block_on(amd.push_index_with(&cfg, &name, &entries, &Quiet))
        .unwrap();

    let dst = store(t.path(), "dst");
    let arm = Platform::parse("linux/arm64").unwrap();
    let got = rt
        .block_on(dst.pull_with(&cfg, &name, Some(&arm), &Quiet))
        .unwrap();
    assert_eq!(got.image.id, arm_id);
    assert_eq!(
        got.repo_digest,
        format!("{}/multi/app@{}", reg.host, index.digest)
    );

    let s390 = Platform::parse("linux/s390x").unwrap();
    let err = rt
        .block_on(dst.pull_with(&cfg, &name, Some(&s390), &Quiet))
        .unwrap_err();
    assert!(matches!(err, RegistryError::NoPlatform { .. }), "{err}");
    assert!(
        err.to_string().contains("linux/amd64, linux/arm64"),
        "{err}"
    );

    if berth::engine::image::host_arch() == "amd64" {
        let host = store(t.path(), "host");
        let got = rt
            .block_on(host.pull_with(&cfg, &name, None, &Quiet))
            .unwrap();
        assert_eq!(got.image.id, amd.resolve("local/multi:amd64").unwrap().id);
    }
}

#[test]
fn push_mounts_blobs_from_another_repository() {
    require_registry!();
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path());
    let first = format!("{}/team/one:1", reg.host);
    let second = format!("{}/team/two:1", reg.host);
    let s = store_with_image(t.path(), &first, "amd64", 20, 50_000);
    let rt = rt();
    rt.block_on(s.push_with(&cfg, &first, &Quiet)).unwrap();
    s.tag(&first, &second).unwrap();
    let rec = Recorder::default();
    let out = rt.block_on(s.push_with(&cfg, &second, &rec)).unwrap();
    assert_eq!(out.uploaded, 0);
    assert_eq!(
        rec.count(|e| *e == BlobEvent::Mounted),
        3,
        "config and 2 layers"
    );
    let dst = store(t.path(), "dst");
    rt.block_on(dst.pull_with(&cfg, &second, None, &Quiet))
        .unwrap();
}

#[test]
fn a_corrupted_blob_is_rejected_and_nothing_is_stored() {
    require_registry!();
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path());
    let name = format!("{}/bad/blob:1", reg.host);
    let s = store_with_image(t.path(), &name, "amd64", 30, 100_000);
    let rt = rt();
    rt.block_on(s.push_with(&cfg, &name, &Quiet)).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&s.read_blob(&s.find_manifest(&name).unwrap()).unwrap()).unwrap();
    let layer = manifest["layers"][1]["digest"].as_str().unwrap().to_owned();
    let data = reg.blob_data(&layer);
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff; // same size, different content
    fs::write(&data, bytes).unwrap();

    let dst = store(t.path(), "dst");
    let err = rt
        .block_on(dst.pull_with(&cfg, &name, None, &Quiet))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            RegistryError::Store {
                source: ImageError::DigestMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    let hex = &layer[7..];
    assert!(!dst.root().join("blobs/sha256").join(hex).exists());
    assert!(!dst.root().join("downloads").join(hex).exists());
    assert!(dst.list().unwrap().is_empty());
}

#[test]
fn an_interrupted_pull_resumes() {
    require_registry!();
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path());
    let repo = "cut/transfer:1";
    let size = 3 << 20;
    let s = store_with_image(t.path(), &format!("{}/{repo}", reg.host), "amd64", 40, size);
    let rt = rt();
    rt.block_on(s.push_with(&cfg, &format!("{}/{repo}", reg.host), &Quiet))
        .unwrap();

    let proxy = Proxy::start(&reg.host, 1 << 20);
    let via = format!("{}/{repo}", proxy.host);
    let dst = store(t.path(), "dst");
    let err = rt.block_on(dst.pull_with(&cfg, &via, None, &Quiet));
    assert!(err.is_err(), "the proxy cut the transfer");
    let partial: Vec<_> = fs::read_dir(dst.root().join("downloads"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(partial.len(), 1, "one partial layer kept");
    assert!(partial[0].metadata().unwrap().len() > 0);
    assert!(dst.list().unwrap().is_empty(), "no image recorded");

    proxy.cut.store(false, Ordering::SeqCst);
    let got = rt
        .block_on(dst.pull_with(&cfg, &via, None, &Quiet))
        .unwrap();
    assert!(got.downloaded < size as u64, "resumed, not restarted");
    assert!(
        proxy.ranges.load(Ordering::SeqCst) >= 1,
        "asked for a range"
    );
    let top = got.image.layers.last().unwrap();
    assert_eq!(fs::read(top.join("data/blob")).unwrap(), noise(41, size));
    assert_eq!(
        fs::read_dir(dst.root().join("downloads")).unwrap().count(),
        0
    );
}

#[test]
fn login_logout_basic_auth_over_tls() {
    require_registry!();
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: openssl is missing (apt-get install openssl)");
        return;
    }
    let (reg, tls) = Registry::start_with(true);
    let tls = tls.unwrap();
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path());
    let rt = rt();
    let name = format!("{}/private/app:1", reg.host);
    let s = store_with_image(t.path(), &name, "amd64", 50, 1000);

    // Without the CA the certificate is not trusted.
    let err = rt
        .block_on(s.push_with(&cfg, &name, &Quiet))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("certificate") || err.contains("Unknown"),
        "{err}"
    );
    let certs = t.path().join("certs.d").join(&reg.host);
    fs::create_dir_all(&certs).unwrap();
    fs::copy(&tls.ca, certs.join("ca.crt")).unwrap();

    // Trusted now, but anonymous pushes are refused, and so is a wrong password.
    assert!(rt.block_on(s.push_with(&cfg, &name, &Quiet)).is_err());
    let mut wrong = creds(&tls);
    wrong.password = "nope".into();
    let err = rt
        .block_on(berth::engine::registry::login(&cfg, &reg.host, &wrong))
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");

    // The CLI: login from stdin, credentials stored 0600, push and pull work, logout.
    let berth = |args: &[&str], stdin: &str| {
        let mut child = Command::new(BERTH)
            .arg("--root")
            .arg(t.path().join("cli"))
            .args(args)
            .env("DOCKER_CONFIG", t.path().join("docker"))
            .env("BERTH_CERTS_D", t.path().join("certs.d"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = berth(
        &["login", "-u", "tester", "--password-stdin", &reg.host],
        "nope\n",
    );
    assert!(!out.status.success());
    let out = berth(
        &["login", "-u", "tester", "--password-stdin", &reg.host],
        &format!("{}\n", tls.password),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Login Succeeded"
    );
    let file = t.path().join("docker/config.json");
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&tls.password));

    rt.block_on(s.push_with(&cfg, &name, &Quiet)).unwrap();
    let dst = store(t.path(), "dst");
    rt.block_on(dst.pull_with(&cfg, &name, None, &Quiet))
        .unwrap();

    let out = berth(&["logout", &reg.host], "");
    assert!(out.status.success());
    assert!(cfg.credentials.get(&reg.host).unwrap().is_none());
    let again = store(t.path(), "again");
    assert!(
        rt.block_on(again.pull_with(&cfg, &name, None, &Quiet))
            .is_err()
    );
}
