//! Changing a step's root filesystem from the host side, confined to it: files are described as
//! a tar stream and applied with the image unpacker (`openat2(RESOLVE_IN_ROOT)` for every
//! parent, `O_NOFOLLOW` for the entry), and `/etc/passwd` is parsed by hand, never through NSS.

use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::context::SourceRoot;

/// Files to put into a root filesystem, collected as a tar in a temp file.
pub struct Changes {
    tar: tar::Builder<File>,
    count: usize,
}

/// Owner and mode applied to what COPY writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub chmod: Option<u32>,
}

impl Changes {
    pub fn new(tmp: &Path) -> io::Result<Changes> {
        let f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp)?;
        Ok(Changes {
            tar: tar::Builder::new(f),
            count: 0,
        })
    }

    fn header(kind: EntryType, mode: u32, a: Attrs, mtime: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(a.chmod.unwrap_or(mode) & 0o7777);
        h.set_uid(a.uid.into());
        h.set_gid(a.gid.into());
        h.set_mtime(mtime);
        h.set_size(0);
        h
    }

    pub fn dir(&mut self, dest: &str, a: Attrs) -> io::Result<()> {
        self.count += 1;
        let mut h = Self::header(EntryType::Directory, 0o755, a, now());
        self.tar.append_data(&mut h, rel(dest), io::empty())
    }

    pub fn bytes(&mut self, dest: &str, data: &[u8], mode: u32, a: Attrs) -> io::Result<()> {
        self.count += 1;
        let mut h = Self::header(EntryType::Regular, mode, a, now());
        h.set_size(data.len() as u64);
        self.tar.append_data(&mut h, rel(dest), data)
    }

    /// Adds the host file, directory or symlink at `src` as `dest`.
    pub fn host(
        &mut self,
        src: &Path,
        meta: &fs::Metadata,
        dest: &str,
        a: Attrs,
    ) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        self.count += 1;
        let mtime = meta.mtime().max(0) as u64;
        let mode = meta.mode();
        let ft = meta.file_type();
        if ft.is_symlink() {
            let mut h = Self::header(EntryType::Symlink, 0o777, Attrs { chmod: None, ..a }, mtime);
            return self.tar.append_link(&mut h, rel(dest), fs::read_link(src)?);
        }
        if ft.is_dir() {
            let mut h = Self::header(EntryType::Directory, mode, a, mtime);
            return self.tar.append_data(&mut h, rel(dest), io::empty());
        }
        if ft.is_file() {
            let mut h = Self::header(EntryType::Regular, mode, a, mtime);
            h.set_size(meta.len());
            return self.tar.append_data(&mut h, rel(dest), File::open(src)?);
        }
        self.count -= 1;
        Ok(()) // devices, fifos and sockets are not copied
    }

    /// Applies the collected changes to the root filesystem at `root`.
    pub fn apply(self, root: &Path) -> Result<(), String> {
        if self.count == 0 {
            return Ok(());
        }
        let mut f = self.tar.into_inner().map_err(|e| e.to_string())?;
        f.rewind().map_err(|e| e.to_string())?;
        crate::engine::image::unpack::unpack_tar(f, root).map_err(|e| e.to_string())
    }
}

fn rel(dest: &str) -> &str {
    let r = dest.trim_start_matches('/');
    if r.is_empty() { "." } else { r }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The host path `path` (absolute, inside the root) resolves to, confined to `root`.
pub fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let r = SourceRoot::rootfs(root).ok()?;
    r.sources(path).ok()?.into_iter().next().map(|s| s.host)
}

/// Whether `path` is a directory inside `root` (symlinks resolved inside the root).
pub fn is_dir(root: &Path, path: &str) -> bool {
    resolve_in(root, path).is_some_and(|p| p.is_dir())
}

/// Creates `path` (and its parents) in `root` as root-owned 0755 directories if missing.
pub fn ensure_dir(root: &Path, path: &str) -> Result<(), String> {
    if is_dir(root, path) {
        return Ok(());
    }
    let tmp = root
        .parent()
        .unwrap_or(root)
        .join(format!(".mkdir-{:x}.tar", rand::random::<u64>()));
    let mut c = Changes::new(&tmp).map_err(|e| e.to_string())?;
    c.dir(path, Attrs::default()).map_err(|e| e.to_string())?;
    let r = c.apply(root);
    let _ = fs::remove_file(&tmp);
    r
}

fn read_in(root: &Path, path: &str) -> String {
    let Some(p) = resolve_in(root, path) else {
        return String::new();
    };
    let mut s = String::new();
    if let Ok(f) = File::open(p) {
        let _ = f.take(4 << 20).read_to_string(&mut s);
    }
    s
}

fn lookup<'a>(file: &'a str, name: &str) -> Option<Vec<&'a str>> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
}

/// `user[:group]` (names or numbers) to ids, from the root's `/etc/passwd` and `/etc/group`.
pub fn resolve_user(root: &Path, user: &str) -> Result<(u32, u32), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_in(root, "/etc/passwd");
    let field = |f: &[&str], i: usize| f.get(i).and_then(|s| s.parse::<u32>().ok());
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (
            n,
            passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| field(f, 2) == Some(n))
                .and_then(|f| field(&f, 3))
                .unwrap_or(0),
        ),
        Err(_) => {
            let f = lookup(&passwd, u).ok_or_else(|| {
                format!("unable to find user {u}: no matching entries in passwd file")
            })?;
            (field(&f, 2).unwrap_or(0), field(&f, 3).unwrap_or(0))
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = read_in(root, "/etc/group");
                lookup(&group, g)
                    .and_then(|f| field(&f, 2))
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?
            }
        },
    };
    Ok((uid, gid))
}
