//! Turns an overlay upper directory into an OCI layer tar: overlayfs whiteouts (a 0/0
//! character device, the `trusted.overlay.opaque` xattr) become `.wh.` entries again, hard
//! links stay links, and symlinks are stored, never followed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

/// Paths a RUN container gets as mount points; empty stubs of them are not part of a layer.
const MOUNT_STUBS: [&str; 6] = [
    "proc",
    "sys",
    "dev",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

/// Writes the layer tar of `upper` to `out`. With `skip_stubs`, empty mount-point stubs are
/// left out. Returns whether the layer has any entry.
pub fn write_layer(upper: &Path, out: &Path, skip_stubs: bool) -> io::Result<bool> {
    let f = File::create(out)?;
    let mut w = Writer {
        tar: tar::Builder::new(io::BufWriter::new(f)),
        links: HashMap::new(),
        skip_stubs,
        count: 0,
    };
    w.dir(upper, Path::new(""))?;
    let mut inner = w.tar.into_inner()?;
    inner.flush()?;
    Ok(w.count > 0)
}

struct Writer<W: Write> {
    tar: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
    skip_stubs: bool,
    count: usize,
}

impl<W: Write> Writer<W> {
    fn dir(&mut self, dir: &Path, rel: &Path) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = rel.join(&name);
            let meta = fs::symlink_metadata(&path)?;
            if self.skip_stubs && is_stub(&rel, &path, &meta) {
                continue;
            }
            self.entry(&path, &rel, &meta)?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, rel: &Path, meta: &fs::Metadata) -> io::Result<()> {
        self.count += 1;
        let ft = meta.file_type();
        let mut h = Header::new_gnu();
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid().into());
        h.set_gid(meta.gid().into());
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_size(0);
        if ft.is_char_device() && meta.rdev() == 0 {
            let name = whiteout(rel, &format!(".wh.{}", file_name(rel)));
            h.set_entry_type(EntryType::Regular);
            h.set_mode(0o644);
            return self.tar.append_data(&mut h, name, io::empty());
        }
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            self.tar.append_data(&mut h, rel, io::empty())?;
            if crate::sys::fsat::lgetxattr(path, "trusted.overlay.opaque")?.as_deref() == Some(b"y")
            {
                let mut o = Header::new_gnu();
                o.set_entry_type(EntryType::Regular);
                o.set_mode(0o644);
                o.set_size(0);
                o.set_mtime(meta.mtime().max(0) as u64);
                self.tar
                    .append_data(&mut o, rel.join(".wh..wh..opq"), io::empty())?;
            }
            return self.dir(path, rel);
        }
        if ft.is_symlink() {
            h.set_entry_type(EntryType::Symlink);
            let target = fs::read_link(path)?;
            return self.tar.append_link(&mut h, rel, target);
        }
        if meta.nlink() > 1 && !ft.is_dir() {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                h.set_entry_type(EntryType::Link);
                let first = first.clone();
                return self.tar.append_link(&mut h, rel, first);
            }
            self.links.insert(key, rel.to_owned());
        }
        if ft.is_file() {
            h.set_entry_type(EntryType::Regular);
            h.set_size(meta.len());
            let f = File::open(path)?;
            return self.tar.append_data(&mut h, rel, f);
        }
        let rdev = meta.rdev();
        h.set_entry_type(if ft.is_char_device() {
            EntryType::Char
        } else if ft.is_block_device() {
            EntryType::Block
        } else if ft.is_fifo() {
            EntryType::Fifo
        } else {
            self.count -= 1;
            return Ok(()); // sockets are not stored
        });
        h.set_device_major(nix::sys::stat::major(rdev) as u32)?;
        h.set_device_minor(nix::sys::stat::minor(rdev) as u32)?;
        self.tar.append_data(&mut h, rel, io::empty())
    }
}

fn file_name(rel: &Path) -> String {
    rel.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn whiteout(rel: &Path, name: &str) -> PathBuf {
    match rel.parent() {
        Some(p) => p.join(name),
        None => PathBuf::from(name),
    }
}

fn is_stub(rel: &Path, path: &Path, meta: &fs::Metadata) -> bool {
    let Some(s) = rel.to_str() else { return false };
    if !MOUNT_STUBS.contains(&s) {
        return false;
    }
    if meta.is_dir() {
        fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
    } else {
        meta.is_file() && meta.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_to_tar() {
        let t = tempfile::tempdir().unwrap();
        let up = t.path().join("upper");
        fs::create_dir_all(up.join("a/b")).unwrap();
        fs::write(up.join("a/f"), "hi").unwrap();
        fs::hard_link(up.join("a/f"), up.join("a/g")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", up.join("l")).unwrap();
        fs::create_dir(up.join("proc")).unwrap();
        let out = t.path().join("l.tar");
        assert!(write_layer(&up, &out, true).unwrap());
        let mut ar = tar::Archive::new(File::open(&out).unwrap());
        let got: Vec<(String, EntryType)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), EntryType::Directory),
                ("a/b".into(), EntryType::Directory),
                ("a/f".into(), EntryType::Regular),
                ("a/g".into(), EntryType::Link),
                ("l".into(), EntryType::Symlink),
            ]
        );
    }
}
