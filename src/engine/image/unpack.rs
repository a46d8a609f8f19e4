//! Unpacks one OCI layer (tar, gzip or zstd) into a directory that becomes an overlayfs lowerdir.
//!
//! Confinement: every parent directory is opened with `openat2(RESOLVE_IN_ROOT)` on the layer
//! directory, so symlinks inside the layer (`var/run -> /run`, `x -> ../..`) resolve as they would
//! in the container and never leave it; the final component is then created relative to that
//! directory fd with `O_NOFOLLOW`/`O_EXCL`, and metadata is set through fds or with
//! `AT_SYMLINK_NOFOLLOW`. Entry names that climb out with `..` are refused. OCI whiteouts become
//! overlayfs whiteouts: `.wh.X` a 0/0 character device `X`, `.wh..wh..opq` the xattr
//! `trusted.overlay.opaque=y`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, makedev,
    mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use tar::EntryType;

use super::digest::{Digest, HashingReader};
use crate::sys::fsat::{fsetxattr, open_at, open_in_root};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// Layers must not forge overlayfs metadata (whiteouts, redirects, metacopy) through xattrs.
const FORBIDDEN_XATTR_PREFIX: &str = "trusted.overlay.";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the layer archive: {0}")]
    Read(#[source] io::Error),
    #[error("entry {entry:?}: path leads outside the layer directory")]
    Escape { entry: String },
    #[error("entry {entry:?}: {reason}")]
    Invalid { entry: String, reason: String },
    #[error("entry {entry:?}: {op}: {source}")]
    Fs {
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Dest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Unpacks a layer blob (compression detected from its first bytes) into the existing,
/// empty directory `dest` and returns the diff id: the digest of the uncompressed tar.
pub fn unpack_layer(blob: impl Read, dest: &Path) -> Result<Digest, UnpackError> {
    let tar = decompress(BufReader::with_capacity(256 * 1024, blob)).map_err(UnpackError::Read)?;
    let mut hashed = HashingReader::new(tar);
    unpack_tar(&mut hashed, dest)?;
    let (diff_id, _) = hashed.finish().map_err(UnpackError::Read)?;
    Ok(diff_id)
}

/// Wraps `r` in a gzip or zstd decoder when its first bytes say so; plain tar otherwise.
pub fn decompress<'a>(mut r: impl BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// Unpacks an uncompressed layer tar into the existing directory `dest`.
pub fn unpack_tar(reader: impl Read, dest: &Path) -> Result<(), UnpackError> {
    let root = File::open(dest)
        .map(OwnedFd::from)
        .map_err(|source| UnpackError::Dest {
            path: dest.to_owned(),
            source,
        })?;
    let mut u = Unpacker {
        root,
        chown: Uid::effective().is_root(),
        cache: None,
        dir_times: Vec::new(),
        buf: vec![0; COPY_BUF],
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        u.entry(&mut entry)?;
    }
    u.finish_dir_times();
    Ok(())
}

/// Metadata of one entry, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker {
    root: OwnedFd,
    chown: bool,
    /// The last parent directory resolved, by its cleaned path.
    cache: Option<(Vec<Vec<u8>>, Rc<OwnedFd>)>,
    /// Directory mtimes, set at the end because creating entries changes them.
    dir_times: Vec<(PathBuf, i64)>,
    /// The copy buffer for file contents, reused for every file.
    buf: Vec<u8>,
}

/// Large enough that a big file is written in few system calls (`io::copy` uses 8 KiB).
const COPY_BUF: usize = 256 * 1024;

/// Copies an entry's content to `f` through `buf`, filling the buffer before each write.
fn copy_entry(entry: &mut impl Read, f: &mut File, buf: &mut [u8]) -> io::Result<()> {
    use std::io::Write;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match entry.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        f.write_all(&buf[..filled])?;
        if filled < buf.len() {
            return Ok(());
        }
    }
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let comps = clean(&raw).ok_or_else(|| UnpackError::Escape {
            entry: name.clone(),
        })?;
        let Some((last, parents)) = comps.split_last() else {
            // The layer root itself: its attributes come from the container's upper dir.
            return Ok(());
        };
        let fs = |op: &'static str| {
            let entry = name.clone();
            move |source: io::Error| UnpackError::Fs { entry, op, source }
        };
        let meta = read_meta(entry).map_err(UnpackError::Read)?;

        // Anything created or removed at `comps` (or, for a whiteout, next to it) may replace
        // a cached parent directory.
        if let Some((cached, _)) = &self.cache
            && (cached.starts_with(&comps) || last.starts_with(WHITEOUT_PREFIX))
        {
            self.cache = None;
        }
        let parent = self
            .parent(parents)
            .map_err(fs("resolving the parent directory"))?;
        let parent = parent.as_fd();

        if let Some(victim) = last.strip_prefix(WHITEOUT_PREFIX) {
            if last.as_slice() == OPAQUE_MARKER {
                return fsetxattr(parent, OPAQUE_XATTR, b"y").map_err(fs("marking opaque"));
            }
            if victim.starts_with(WHITEOUT_PREFIX) {
                return Ok(()); // other aufs metadata (.wh..wh.plnk, .wh..wh.aufs)
            }
            if victim.is_empty() || victim == b"." || victim == b".." {
                return Err(UnpackError::Invalid {
                    entry: name,
                    reason: "whiteout names no file".into(),
                });
            }
            let victim = Path::new(OsStr::from_bytes(victim));
            remove_existing(parent, victim, false).map_err(fs("removing the whited-out file"))?;
            mknodat(
                Some(parent.as_raw_fd()),
                victim,
                SFlag::S_IFCHR,
                Mode::empty(),
                makedev(0, 0),
            )
            .map_err(errno(fs("creating the whiteout")))?;
            return self
                .chown_at(parent, victim, &meta)
                .map_err(fs("chown whiteout"));
        }

        let file = Path::new(OsStr::from_bytes(last));
        // Files and directories are created first and only replace what exists on EEXIST
        // (most entries are new: one system call saved each); other kinds clear the way first.
        let is_file = matches!(
            kind,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
        );
        if !is_file && kind != EntryType::Directory {
            remove_existing(parent, file, false).map_err(fs("replacing"))?;
        }
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let create = || {
                    open_at(
                        parent,
                        file,
                        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW,
                        Mode::from_bits_truncate(0o600),
                    )
                };
                let fd = match create() {
                    Err(Errno::EEXIST) => {
                        remove_existing(parent, file, false).map_err(fs("replacing"))?;
                        create()
                    }
                    other => other,
                }
                .map_err(errno(fs("creating")))?;
                let mut f = File::from(fd);
                copy_entry(entry, &mut f, &mut self.buf).map_err(fs("writing"))?;
                self.set_fd_meta(f.as_fd(), &meta)
                    .map_err(fs("setting metadata"))?;
                let t = TimeSpec::new(meta.mtime, 0);
                futimens(f.as_raw_fd(), &t, &t).map_err(errno(fs("setting mtime")))?;
            }
            EntryType::Directory => {
                let mkdir = || {
                    mkdirat(
                        Some(parent.as_raw_fd()),
                        file,
                        Mode::from_bits_truncate(0o700),
                    )
                };
                match mkdir() {
                    // A directory stays (its contents merge); anything else is replaced.
                    Err(Errno::EEXIST) => {
                        if !remove_existing(parent, file, true).map_err(fs("replacing"))? {
                            mkdir().map_err(errno(fs("creating directory")))?;
                        }
                    }
                    other => other.map_err(errno(fs("creating directory")))?,
                }
                let fd = open_at(
                    parent,
                    file,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(errno(fs("opening directory")))?;
                self.set_fd_meta(fd.as_fd(), &meta)
                    .map_err(fs("setting metadata"))?;
                let path: PathBuf = comps.iter().map(|c| OsStr::from_bytes(c)).collect();
                self.dir_times.push((path, meta.mtime));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::Invalid {
                        entry: name.clone(),
                        reason: "symlink without target".into(),
                    })?;
                let target = Path::new(OsStr::from_bytes(&target));
                symlinkat(target, Some(parent.as_raw_fd()), file)
                    .map_err(errno(fs("creating symlink")))?;
                self.chown_at(parent, file, &meta)
                    .map_err(fs("chown symlink"))?;
                self.mtime_at(parent, file, &meta)
                    .map_err(fs("setting mtime"))?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let target = clean(&target).ok_or_else(|| UnpackError::Escape {
                    entry: name.clone(),
                })?;
                let Some((tlast, tparents)) = target.split_last() else {
                    return Err(UnpackError::Invalid {
                        entry: name,
                        reason: "hard link to the layer root".into(),
                    });
                };
                if target == comps {
                    return Ok(());
                }
                let tdir: PathBuf = tparents.iter().map(|c| OsStr::from_bytes(c)).collect();
                let tdir =
                    open_in_root(self.root.as_fd(), &tdir, OFlag::O_PATH | OFlag::O_DIRECTORY)
                        .map_err(errno(fs("resolving the link target")))?;
                linkat(
                    Some(tdir.as_raw_fd()),
                    Path::new(OsStr::from_bytes(tlast)),
                    Some(parent.as_raw_fd()),
                    file,
                    AtFlags::empty(),
                )
                .map_err(errno(fs("creating hard link")))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                mknodat(
                    Some(parent.as_raw_fd()),
                    file,
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    makedev(major.into(), minor.into()),
                )
                .map_err(errno(fs("creating device node")))?;
                self.chown_at(parent, file, &meta).map_err(fs("chown"))?;
                // glibc implements AT_SYMLINK_NOFOLLOW for fchmodat through O_PATH.
                fchmodat(
                    Some(parent.as_raw_fd()),
                    file,
                    Mode::from_bits_truncate(meta.mode),
                    FchmodatFlags::NoFollowSymlink,
                )
                .map_err(errno(fs("chmod")))?;
                self.mtime_at(parent, file, &meta)
                    .map_err(fs("setting mtime"))?;
            }
            other => {
                tracing::warn!(entry = %name, kind = ?other, "skipping unsupported tar entry type");
            }
        }
        Ok(())
    }

    /// Opens (creating as needed, mode 0755) the directory `parents` inside the layer root.
    fn parent(&mut self, parents: &[Vec<u8>]) -> io::Result<Rc<OwnedFd>> {
        if let Some((cached, fd)) = &self.cache
            && cached.as_slice() == parents
        {
            return Ok(Rc::clone(fd));
        }
        let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        let path: PathBuf = parents.iter().map(|c| OsStr::from_bytes(c)).collect();
        let fd = match open_in_root(self.root.as_fd(), &path, dir_flags) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                // Walk down from the root, creating what is missing; each step re-resolves
                // inside the root so symlinks met on the way stay confined.
                let mut cur = self.root.try_clone()?;
                let mut prefix = PathBuf::new();
                for c in parents {
                    let c = Path::new(OsStr::from_bytes(c));
                    prefix.push(c);
                    cur = match open_in_root(self.root.as_fd(), &prefix, dir_flags) {
                        Ok(fd) => fd,
                        Err(Errno::ENOENT) => {
                            mkdirat(Some(cur.as_raw_fd()), c, Mode::from_bits_truncate(0o755))?;
                            let fd = open_at(
                                cur.as_fd(),
                                c,
                                dir_flags | OFlag::O_NOFOLLOW,
                                Mode::empty(),
                            )?;
                            fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(0o755))?;
                            fd
                        }
                        Err(e) => return Err(e.into()),
                    };
                }
                cur
            }
            Err(e) => return Err(e.into()),
        };
        let fd = Rc::new(fd);
        self.cache = Some((parents.to_vec(), Rc::clone(&fd)));
        Ok(fd)
    }

    /// Owner (when running as root), mode and xattrs of an open file or directory, in the
    /// order that keeps setuid bits and file capabilities (chown clears both).
    fn set_fd_meta(&self, fd: BorrowedFd<'_>, meta: &Meta) -> io::Result<()> {
        if self.chown {
            fchown(
                fd.as_raw_fd(),
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )?;
        }
        fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(meta.mode))?;
        for (name, value) in &meta.xattrs {
            match fsetxattr(fd, name, value) {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    tracing::warn!(xattr = %name, "filesystem does not support this xattr");
                }
                other => other?,
            }
        }
        Ok(())
    }

    fn chown_at(&self, dir: BorrowedFd<'_>, name: &Path, meta: &Meta) -> io::Result<()> {
        if self.chown {
            fchownat(
                Some(dir.as_raw_fd()),
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(())
    }

    fn mtime_at(&self, dir: BorrowedFd<'_>, name: &Path, meta: &Meta) -> io::Result<()> {
        let t = TimeSpec::new(meta.mtime, 0);
        utimensat(
            Some(dir.as_raw_fd()),
            name,
            &t,
            &t,
            UtimensatFlags::NoFollowSymlink,
        )?;
        Ok(())
    }

    fn finish_dir_times(&mut self) {
        for (path, mtime) in self.dir_times.drain(..).rev() {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
            // A directory replaced later in the archive is simply skipped.
            if let Ok(fd) = open_in_root(self.root.as_fd(), &path, flags) {
                let t = TimeSpec::new(mtime, 0);
                let _ = futimens(fd.as_raw_fd(), &t, &t);
            }
        }
    }
}

fn errno<F: FnOnce(io::Error) -> UnpackError>(f: F) -> impl FnOnce(Errno) -> UnpackError {
    move |e| f(e.into())
}

/// Splits a tar path into components, dropping empty and `.` ones and applying `..`
/// lexically; `None` when `..` would climb above the root.
fn clean(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c.to_vec()),
        }
    }
    Some(out)
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
    let h = entry.header();
    // Like Go's archive/tar (what docker uses), an empty numeric field reads as 0.
    let id = |v: io::Result<u64>| v.map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX));
    let mut meta = Meta {
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        uid: id(h.uid()),
        gid: id(h.gid()),
        mtime: h.mtime().map_or(0, |t| i64::try_from(t).unwrap_or(0)),
        xattrs: Vec::new(),
    };
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX)
                && !name.starts_with(FORBIDDEN_XATTR_PREFIX)
            {
                meta.xattrs
                    .push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(meta)
}

/// Removes whatever exists at `dir/name` (recursively for a directory), without following
/// symlinks. Returns true, removing nothing, when it is a directory and `keep_dir` is set.
fn remove_existing(dir: BorrowedFd<'_>, name: &Path, keep_dir: bool) -> io::Result<bool> {
    let st = match fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    if is_dir && keep_dir {
        return Ok(true);
    }
    if is_dir {
        remove_dir_at(dir, name)?;
    } else {
        unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(false)
}

fn remove_dir_at(parent: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
    let fd = open_at(parent, name, flags, Mode::empty())?;
    let mut children = Vec::new();
    let mut listing = nix::dir::Dir::openat(
        Some(fd.as_raw_fd()),
        ".",
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for e in listing.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            children.push(n.to_vec());
        }
    }
    drop(listing);
    for child in children {
        remove_existing(fd.as_fd(), Path::new(OsStr::from_bytes(&child)), false)?;
    }
    unlinkat(Some(parent.as_raw_fd()), name, UnlinkatFlags::RemoveDir)?;
    Ok(())
}
