//! Layer unpacking: overlayfs whiteouts, metadata, container-correct symlinks, and a suite of
//! malicious layers that must not write outside the layer directory (security.md §3 B).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth::engine::image::unpack::{unpack_layer, unpack_tar};
use berth::sys::fsat::lgetxattr;

/// One tar entry, written with raw header fields so that hostile names survive.
enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str, u32),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Fifo(&'a str),
    /// A PAX extended header applying to the next entry.
    Pax(&'a [(&'a str, &'a [u8])]),
}

fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_mode(0o644);
        h.set_size(0);
        let (name, data): (&str, Vec<u8>) = match e {
            E::File(n, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                (n, data.to_vec())
            }
            E::Dir(n, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                (n, vec![])
            }
            E::Sym(n, target) | E::Hard(n, target) => {
                h.set_entry_type(if matches!(e, E::Sym(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                (n, vec![])
            }
            E::Char(n, major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                h.set_mode(0o666);
                (n, vec![])
            }
            E::Fifo(n) => {
                h.set_entry_type(tar::EntryType::Fifo);
                (n, vec![])
            }
            E::Pax(records) => {
                let mut data = Vec::new();
                for (k, v) in *records {
                    let body = [format!(" {k}=").as_bytes(), v, b"\n"].concat();
                    let mut len = body.len() + 1;
                    while format!("{len}").len() + body.len() != len {
                        len += 1;
                    }
                    data.extend_from_slice(format!("{len}").as_bytes());
                    data.extend_from_slice(&body);
                }
                h.set_entry_type(tar::EntryType::XHeader);
                h.set_size(data.len() as u64);
                ("././@PaxHeader", data)
            }
        };
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn unpack(entries: &[E<'_>]) -> (tempfile::TempDir, PathBuf, Result<(), String>) {
    let t = tempfile::tempdir().unwrap();
    let layer = t.path().join("layer");
    fs::create_dir(&layer).unwrap();
    let r = unpack_tar(&tar_of(entries)[..], &layer).map_err(|e| e.to_string());
    (t, layer, r)
}

#[test]
fn whiteouts_become_overlayfs_forms() {
    let (_t, layer, r) = unpack(&[
        E::Dir("d/", 0o755),
        E::File("d/.wh..wh..opq", b"", 0o644),
        E::File("d/y", b"y", 0o644),
        E::File(".wh.a", b"", 0o644),
        E::File("e/.wh.gone", b"", 0o644),
        E::File(".wh..wh.plnk", b"", 0o644),
    ]);
    r.unwrap();
    for wh in [layer.join("a"), layer.join("e/gone")] {
        let m = fs::symlink_metadata(&wh).unwrap();
        assert!(m.file_type().is_char_device(), "{wh:?}");
        assert_eq!(m.rdev(), 0, "{wh:?}");
    }
    assert_eq!(
        lgetxattr(&layer.join("d"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!layer.join("d/.wh..wh..opq").exists());
    assert!(!layer.join(".wh..wh.plnk").exists());
    assert!(!layer.join(".wh.a").exists());
    assert_eq!(fs::read(layer.join("d/y")).unwrap(), b"y");
}

#[test]
fn keeps_metadata_links_and_devices() {
    let (_t, layer, r) = unpack(&[
        E::Dir("bin", 0o750),
        E::File("bin/tool", b"#!/bin/sh\n", 0o4755),
        E::Sym("bin/sh", "tool"),
        E::Hard("bin/tool2", "bin/tool"),
        E::Char("dev/null", 1, 3),
        E::Fifo("run/fifo"),
        E::Dir("tmp", 0o1777),
        E::Pax(&[
            ("SCHILY.xattr.user.note", b"hi"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ]),
        E::Dir("forged", 0o755),
    ]);
    r.unwrap();
    let tool = fs::symlink_metadata(layer.join("bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(tool.mtime(), 1_000_000);
    assert_eq!(tool.nlink(), 2);
    assert_eq!(
        fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("tool")
    );
    let bin = fs::metadata(layer.join("bin")).unwrap();
    assert_eq!(bin.permissions().mode() & 0o7777, 0o750);
    assert_eq!(
        bin.mtime(),
        1_000_000,
        "directory mtimes are set after their content"
    );
    let null = fs::symlink_metadata(layer.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(
        fs::symlink_metadata(layer.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let implied = fs::metadata(layer.join("run")).unwrap();
    assert_eq!(implied.permissions().mode() & 0o7777, 0o755);
    let tmp = fs::metadata(layer.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    let forged = layer.join("forged");
    assert_eq!(
        lgetxattr(&forged, "user.note").unwrap(),
        Some(b"hi".to_vec())
    );
    assert_eq!(lgetxattr(&forged, "trusted.overlay.opaque").unwrap(), None);
}

#[test]
fn absolute_symlinks_resolve_inside_the_layer() {
    // Debian images have var/run -> /run; docker writes var/run/x to <rootfs>/run/x.
    let (_t, layer, r) = unpack(&[
        E::Dir("run", 0o755),
        E::Sym("var/run", "/run"),
        E::File("var/run/app.pid", b"1", 0o644),
    ]);
    r.unwrap();
    assert_eq!(fs::read(layer.join("run/app.pid")).unwrap(), b"1");
}

#[test]
fn later_entries_replace_earlier_ones() {
    let (_t, layer, r) = unpack(&[
        E::Dir("x/sub", 0o755),
        E::File("x/sub/f", b"1", 0o644),
        E::File("x", b"now a file", 0o600),
        E::File("y", b"1", 0o644),
        E::Dir("y", 0o700),
        E::Dir("y", 0o755),
    ]);
    r.unwrap();
    assert_eq!(fs::read(layer.join("x")).unwrap(), b"now a file");
    let y = fs::metadata(layer.join("y")).unwrap();
    assert!(y.is_dir());
    assert_eq!(y.permissions().mode() & 0o777, 0o755);
}

#[test]
fn compressed_layers_give_the_diff_id() {
    use std::io::Write;
    let tar = tar_of(&[E::File("hello", b"world", 0o644)]);
    let diff_id = berth::engine::image::Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for blob in [tar.clone(), gz, zst] {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(unpack_layer(&blob[..], t.path()).unwrap(), diff_id);
        assert_eq!(fs::read(t.path().join("hello")).unwrap(), b"world");
    }
}

/// A malicious layer case: the temp dir holds `layer/` and `outside/sentinel`; after the unpack
/// (which may fail), `outside` must be exactly as before.
fn malicious(
    name: &str,
    build: impl Fn(&Path) -> Vec<u8>,
) -> (PathBuf, Result<(), String>, tempfile::TempDir) {
    let t = tempfile::tempdir().unwrap();
    let layer = t.path().join("layer");
    let outside = t.path().join("outside");
    fs::create_dir(&layer).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    let sentinel = outside.join("sentinel");
    fs::write(&sentinel, b"original").unwrap();
    fs::set_permissions(&sentinel, fs::Permissions::from_mode(0o644)).unwrap();
    let before = fs::metadata(&sentinel).unwrap();

    let r = unpack_tar(&build(t.path())[..], &layer).map_err(|e| e.to_string());

    let names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["sentinel"],
        "{name}: files appeared outside the layer"
    );
    let after = fs::symlink_metadata(&sentinel).unwrap();
    assert!(after.is_file(), "{name}");
    assert_eq!(fs::read(&sentinel).unwrap(), b"original", "{name}");
    assert_eq!(
        after.permissions().mode(),
        before.permissions().mode(),
        "{name}"
    );
    assert_eq!(
        (after.uid(), after.gid(), after.nlink()),
        (before.uid(), before.gid(), 1),
        "{name}"
    );
    assert_eq!(after.mtime(), before.mtime(), "{name}");
    assert_eq!(
        fs::metadata(&outside).unwrap().permissions().mode() & 0o7777,
        0o755,
        "{name}"
    );
    let top: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        top.len(),
        2,
        "{name}: files appeared next to the layer: {top:?}"
    );
    (layer, r, t)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn dotdot_entries_are_refused() {
    let (_, r, _t) = malicious("../", |_| {
        tar_of(&[E::File("../outside/pwned", b"x", 0o644)])
    });
    assert!(r.unwrap_err().contains("outside the layer"));
    let (_, r, _t) = malicious("a/../../", |_| {
        tar_of(&[E::File("a/../../outside/pwned", b"x", 0o644)])
    });
    assert!(r.is_err());
    // Lexically inside is fine.
    let (layer, r, _t) = malicious("a/../b", |_| tar_of(&[E::File("a/../b", b"x", 0o644)]));
    r.unwrap();
    assert!(layer.join("b").is_file());
}

#[test]
fn absolute_entries_land_inside() {
    let (layer, r, _t) = malicious("/abs", |base| {
        let p = format!("{}/outside/pwned", path_str(base));
        tar_of(&[E::File(&p, b"x", 0o644), E::File("/abs", b"x", 0o644)])
    });
    r.unwrap();
    assert!(layer.join("abs").is_file());
}

#[test]
fn symlink_to_root_then_file_through_it() {
    let (layer, r, _t) = malicious("sl -> /", |base| {
        let through = format!("sl{}/outside/pwned", path_str(base));
        tar_of(&[E::Sym("sl", "/"), E::File(&through, b"x", 0o644)])
    });
    // Resolved in the layer: the file lands under layer/<base>/outside.
    r.unwrap();
    let confined = layer.join(&path_str(&layer.parent().unwrap().join("outside/pwned"))[1..]);
    assert!(confined.is_file());
}

#[test]
fn symlink_up_then_file_through_it() {
    for target in ["..", "../..", "../../../../.."] {
        let (layer, r, _t) = malicious(target, |_| {
            tar_of(&[
                E::Sym("up", target),
                E::File("up/outside/pwned", b"x", 0o644),
            ])
        });
        r.unwrap();
        assert!(layer.join("outside/pwned").is_file(), "{target}");
    }
    // RUSTSEC-2021-0080: `s -> ..` then `s/x/y` creating directories.
    let (layer, r, _t) = malicious("s/x/y", |_| {
        tar_of(&[E::Sym("s", ".."), E::Dir("s/outside/y", 0o777)])
    });
    r.unwrap();
    assert!(layer.join("outside/y").is_dir());
}

#[test]
fn symlink_to_host_path_then_file_through_it() {
    let (_, r, _t) = malicious("sl -> host dir", |base| {
        let target = format!("{}/outside", path_str(base));
        tar_of(&[E::Sym("sl", &target), E::File("sl/pwned", b"x", 0o644)])
    });
    assert!(
        r.is_err(),
        "the symlink dangles inside the layer, so its child cannot be created"
    );
}

#[test]
fn entries_replace_symlinks_instead_of_following_them() {
    // RUSTSEC-2018-0002: link first, then a regular file of the same name.
    let (layer, r, _t) = malicious("file over symlink", |base| {
        let target = format!("{}/outside/sentinel", path_str(base));
        tar_of(&[E::Sym("a", &target), E::File("a", b"pwn", 0o777)])
    });
    r.unwrap();
    assert_eq!(fs::read(layer.join("a")).unwrap(), b"pwn");
    // RUSTSEC-2026-0067 / CVE-2021-32760: a directory entry over a symlink must not chmod the
    // target.
    let (layer, r, _t) = malicious("dir over symlink", |base| {
        let target = format!("{}/outside", path_str(base));
        tar_of(&[E::Sym("d", &target), E::Dir("d", 0o777)])
    });
    r.unwrap();
    assert!(fs::symlink_metadata(layer.join("d")).unwrap().is_dir());
    let (_, r, _t) = malicious("device over symlink", |base| {
        let target = format!("{}/outside/sentinel", path_str(base));
        tar_of(&[E::Sym("n", &target), E::Char("n", 1, 3)])
    });
    r.unwrap();
}

#[test]
fn hardlinks_stay_inside() {
    let (_, r, _t) = malicious("hard ../", |_| {
        tar_of(&[E::Hard("hl", "../outside/sentinel")])
    });
    assert!(r.unwrap_err().contains("outside the layer"));
    let (_, r, _t) = malicious("hard /abs", |base| {
        let target = format!("{}/outside/sentinel", path_str(base));
        tar_of(&[E::Hard("hl", &target)])
    });
    assert!(
        r.is_err(),
        "the absolute target is looked up inside the layer, where it is missing"
    );
    let (_, r, _t) = malicious("hard through symlink", |base| {
        let target = format!("{}/outside", path_str(base));
        tar_of(&[E::Sym("sl", &target), E::Hard("hl", "sl/sentinel")])
    });
    assert!(r.is_err());
    let (layer, r, _t) = malicious("hard via up symlink", |_| {
        tar_of(&[
            E::Sym("up", ".."),
            E::File("f", b"in", 0o644),
            E::Hard("up/hl", "up/f"),
        ])
    });
    r.unwrap();
    assert_eq!(fs::metadata(layer.join("f")).unwrap().nlink(), 2);
}

#[test]
fn whiteouts_stay_inside() {
    let (_, r, _t) = malicious("../.wh.", |_| {
        tar_of(&[E::File("../outside/.wh.sentinel", b"", 0o644)])
    });
    assert!(r.is_err());
    let (_, r, _t) = malicious(".wh...", |_| tar_of(&[E::File(".wh...", b"", 0o644)]));
    assert!(r.is_err());
    let (_, r, _t) = malicious("sub/.wh...", |_| {
        tar_of(&[E::File("sub/.wh...", b"", 0o644)])
    });
    assert!(r.is_err());
    let (_, r, _t) = malicious(".wh. through symlink", |base| {
        let target = format!("{}/outside", path_str(base));
        tar_of(&[
            E::Sym("sl", &target),
            E::File("sl/.wh.sentinel", b"", 0o644),
        ])
    });
    assert!(r.is_err());
    let (layer, r, _t) = malicious(".wh. through up symlink", |_| {
        tar_of(&[
            E::Sym("up", ".."),
            E::File("up/outside/.wh.sentinel", b"", 0o644),
        ])
    });
    r.unwrap();
    assert!(
        fs::symlink_metadata(layer.join("outside/sentinel"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    let (_, r, _t) = malicious("opaque through symlink", |base| {
        let target = format!("{}/outside", path_str(base));
        tar_of(&[
            E::Sym("sl", &target),
            E::File("sl/.wh..wh..opq", b"", 0o644),
        ])
    });
    assert!(r.is_err());
}
