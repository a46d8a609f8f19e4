//! Content-addressed blob files (`blobs/sha256/<hex>`) and the staging area that imports go
//! through: content is hashed while it is written to a private staging directory and becomes
//! visible in `blobs/` only by an atomic link once the whole import has been checked.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingWriter};
use super::error::ImageError;

/// Largest JSON document (manifest, index, config) berth reads into memory.
pub(crate) const MAX_JSON: u64 = 8 << 20;

#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    pub(crate) fn new(dir: PathBuf) -> Blobs {
        Blobs { dir }
    }

    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Makes a staged file visible as the blob `digest`; a no-op when the blob exists.
    pub(crate) fn commit(&self, staged: &Staged) -> Result<(), ImageError> {
        let dest = self.path(&staged.digest);
        match fs::hard_link(&staged.file, &dest) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(ImageError::Io {
                path: dest,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Reads a small JSON blob, refusing anything above [`MAX_JSON`].
    pub(crate) fn read_json(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        read_bounded(&self.path(digest))
    }
}

pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, ImageError> {
    let f = File::open(path).map_err(ImageError::io(path))?;
    let mut buf = Vec::new();
    f.take(MAX_JSON + 1)
        .read_to_end(&mut buf)
        .map_err(ImageError::io(path))?;
    if buf.len() as u64 > MAX_JSON {
        return Err(ImageError::invalid(
            path.display().to_string(),
            "document",
            format!("larger than {MAX_JSON} bytes"),
        ));
    }
    Ok(buf)
}

/// A file in the staging directory with its digest and size.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    pub file: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

/// A private directory `tmp/load-<random>/` for one import, removed when dropped. It is
/// guarded by the lock file `tmp/load-<random>.lock`, created before the directory and removed
/// after it, so [`clean_stale`] can tell a crashed import's leftovers from a running one.
pub(crate) struct Staging {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    next: u64,
}

impl Staging {
    pub(crate) fn new(tmp: &Path) -> Result<Staging, ImageError> {
        loop {
            let name = format!("load-{:016x}", rand::random::<u64>());
            let lock_path = tmp.join(format!("{name}.lock"));
            let lock = match File::create_new(&lock_path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(ImageError::Io {
                        path: lock_path,
                        source: e,
                    });
                }
            };
            lock.lock().map_err(ImageError::io(&lock_path))?;
            let dir = tmp.join(name);
            fs::create_dir(&dir).map_err(ImageError::io(&dir))?;
            return Ok(Staging {
                dir,
                lock_path,
                _lock: lock,
                next: 0,
            });
        }
    }

    /// Copies `r` into a new staging file, hashing it on the way.
    pub(crate) fn stage(&mut self, mut r: impl Read, label: &str) -> Result<Staged, ImageError> {
        self.next += 1;
        let file = self.dir.join(self.next.to_string());
        let out = File::create_new(&file).map_err(ImageError::io(&file))?;
        let mut w = HashingWriter::new(out);
        io::copy(&mut r, &mut w).map_err(|source| ImageError::Io {
            path: PathBuf::from(label),
            source,
        })?;
        let (_, digest, size) = w.finish();
        Ok(Staged { file, digest, size })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // The directory holds only regular files we created; remove_dir_all never follows
        // symlinks.
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Removes staging directories of imports that died (their lock file is free or gone).
pub(crate) fn clean_stale(tmp: &Path) -> Result<(), ImageError> {
    let entries = fs::read_dir(tmp).map_err(ImageError::io(tmp))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("load-") || name.ends_with(".lock") {
            continue;
        }
        let lock_path = tmp.join(format!("{name}.lock"));
        let lock = match File::open(&lock_path) {
            Ok(lock) => match lock.try_lock() {
                Ok(()) => Some(lock),
                Err(_) => continue, // a running import
            },
            Err(_) => None,
        };
        let _ = fs::remove_dir_all(entry.path());
        if lock.is_some() {
            let _ = fs::remove_file(&lock_path);
        }
    }
    Ok(())
}
