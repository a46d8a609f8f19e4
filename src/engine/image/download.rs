//! Resumable blob downloads: `downloads/<hex>` holds the bytes received so far for one blob,
//! guarded by `locks/blob-<hex>.lock`, so an interrupted pull resumes where it stopped and two
//! pulls of the same blob never write the same file.
//!
//! The whole content is hashed before it becomes visible: on resume the bytes already on disk
//! are hashed again, so a partial file can never smuggle content past the digest check. On a
//! digest or size mismatch the partial file is deleted and nothing reaches `blobs/`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::error::ImageError;

/// One blob being downloaded. Holds the blob's lock until dropped or finished.
pub struct Download {
    digest: Digest,
    size: u64,
    partial: PathBuf,
    dest: PathBuf,
    file: File,
    hasher: Sha256,
    written: u64,
    _lock: File,
}

impl Download {
    pub(crate) fn open(
        digest: &Digest,
        size: u64,
        partial: PathBuf,
        dest: PathBuf,
        lock_path: PathBuf,
    ) -> Result<Download, ImageError> {
        let lock = File::create(&lock_path).map_err(ImageError::io(&lock_path))?;
        lock.lock().map_err(ImageError::io(&lock_path))?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&partial)
            .map_err(ImageError::io(&partial))?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(ImageError::io(&partial))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            written += n as u64;
        }
        let mut d = Download {
            digest: digest.clone(),
            size,
            partial,
            dest,
            file,
            hasher,
            written,
            _lock: lock,
        };
        if d.written > size {
            d.restart()?;
        }
        Ok(d)
    }

    /// True when another process finished the blob while we waited for its lock.
    pub fn already_stored(&self) -> bool {
        self.dest.is_file()
    }

    /// Bytes already on disk: where the next request should start.
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// The expected size of the blob.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Discards what was received (the server ignored a range request).
    pub fn restart(&mut self) -> Result<(), ImageError> {
        self.file
            .set_len(0)
            .map_err(ImageError::io(&self.partial))?;
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
    }

    /// Appends received bytes; refuses to grow past the descriptor's size.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        if self.written + bytes.len() as u64 > self.size {
            let actual = self.written + bytes.len() as u64;
            self.discard();
            return Err(ImageError::SizeMismatch {
                path: self.digest.to_string(),
                expected: self.size,
                actual,
            });
        }
        self.file
            .write_all(bytes)
            .map_err(ImageError::io(&self.partial))?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Checks size and digest and makes the blob visible; on a mismatch the received bytes are
    /// deleted and the error says what arrived.
    pub fn finish(mut self) -> Result<(), ImageError> {
        if self.written != self.size {
            self.discard();
            return Err(ImageError::SizeMismatch {
                path: self.digest.to_string(),
                expected: self.size,
                actual: self.written,
            });
        }
        let actual = Digest::from_hex(&hex::encode(self.hasher.clone().finalize()))
            .expect("sha256 hex is 64 lowercase digits");
        if actual != self.digest {
            self.discard();
            return Err(ImageError::DigestMismatch {
                path: format!("blob {}", self.digest),
                expected: self.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        self.file
            .sync_data()
            .map_err(ImageError::io(&self.partial))?;
        fs::rename(&self.partial, &self.dest).map_err(ImageError::io(&self.dest))
    }

    fn discard(&mut self) {
        let _ = fs::remove_file(&self.partial);
        self.written = 0;
        self.hasher = Sha256::new();
    }
}

/// Removes partial downloads nobody is working on (their lock is free); `prune` calls it.
pub(crate) fn clean_partials(
    downloads: &std::path::Path,
    locks: &std::path::Path,
) -> io::Result<u64> {
    let mut freed = 0;
    for entry in fs::read_dir(downloads)?.flatten() {
        let name = entry.file_name();
        let Some(hex) = name.to_str() else { continue };
        let lock = File::create(locks.join(format!("blob-{hex}.lock")))?;
        if lock.try_lock().is_ok() {
            freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(entry.path())?;
        }
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path, data: &[u8]) -> Download {
        let d = Digest::of(data);
        Download::open(
            &d,
            data.len() as u64,
            dir.join("partial"),
            dir.join("blob"),
            dir.join("lock"),
        )
        .unwrap()
    }

    #[test]
    fn resumes_and_verifies_the_whole_content() {
        let t = tempfile::tempdir().unwrap();
        let data = b"hello, resumable world";
        let mut d = open(t.path(), data);
        d.write(&data[..7]).unwrap();
        drop(d); // interrupted
        let mut d = open(t.path(), data);
        assert_eq!(d.offset(), 7);
        d.write(&data[7..]).unwrap();
        d.finish().unwrap();
        assert_eq!(fs::read(t.path().join("blob")).unwrap(), data);
        assert!(!t.path().join("partial").exists());
    }

    #[test]
    fn a_corrupt_partial_file_is_caught_and_removed() {
        let t = tempfile::tempdir().unwrap();
        let data = b"the real content";
        fs::write(t.path().join("partial"), b"THE").unwrap();
        let mut d = open(t.path(), data);
        d.write(&data[3..]).unwrap();
        assert!(matches!(d.finish(), Err(ImageError::DigestMismatch { .. })));
        assert!(!t.path().join("blob").exists());
        assert!(!t.path().join("partial").exists());
    }

    #[test]
    fn more_bytes_than_the_descriptor_says_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let mut d = open(t.path(), b"abc");
        assert!(matches!(
            d.write(b"abcd"),
            Err(ImageError::SizeMismatch { .. })
        ));
        assert!(!t.path().join("blob").exists());
    }
}
