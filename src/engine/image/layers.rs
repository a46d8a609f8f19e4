//! Unpacked layers shared by all images: `layers/<diff-id hex>/`, each unpacked once.
//!
//! A layer is unpacked into `layers/.tmp-<hex>` under a per-layer lock and renamed into place
//! after its diff id checked out, so the final directory existing means it is complete; a
//! leftover temp directory from an interrupted unpack is removed and the unpack redone.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::error::ImageError;
use super::unpack::unpack_layer;

#[derive(Debug, Clone)]
pub(crate) struct Layers {
    dir: PathBuf,
    locks: PathBuf,
}

impl Layers {
    pub(crate) fn new(dir: PathBuf, locks: PathBuf) -> Layers {
        Layers { dir, locks }
    }

    pub(crate) fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    /// The unpacked directory of the layer `diff_id`, unpacking `blob` first if needed.
    pub(crate) fn ensure(&self, blob: &Path, diff_id: &Digest) -> Result<PathBuf, ImageError> {
        self.ensure_from(diff_id, || File::open(blob).map_err(ImageError::io(blob)))
    }

    /// The unpacked directory of the layer `diff_id`, unpacking the blob `open` returns
    /// (compressed or not) if needed. The blob is opened only when the layer is missing.
    pub(crate) fn ensure_from<R: Read>(
        &self,
        diff_id: &Digest,
        open: impl FnOnce() -> Result<R, ImageError>,
    ) -> Result<PathBuf, ImageError> {
        let dest = self.path(diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let lock_path = self.locks.join(format!("layer-{}.lock", diff_id.hex()));
        let lock = File::create(&lock_path).map_err(ImageError::io(&lock_path))?;
        lock.lock().map_err(ImageError::io(&lock_path))?;
        if dest.is_dir() {
            return Ok(dest); // another process finished it while we waited
        }
        let tmp = self.dir.join(format!(".tmp-{}", diff_id.hex()));
        remove_if_exists(&tmp)?;
        fs::create_dir(&tmp).map_err(ImageError::io(&tmp))?;
        let result = open().and_then(|blob| self.unpack_into(blob, diff_id, &tmp));
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &dest).map_err(ImageError::io(&dest))?;
        Ok(dest)
    }

    fn unpack_into(&self, blob: impl Read, diff_id: &Digest, tmp: &Path) -> Result<(), ImageError> {
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o755)).map_err(ImageError::io(tmp))?;
        let actual = unpack_layer(blob, tmp).map_err(|source| ImageError::Unpack {
            diff_id: diff_id.to_string(),
            source,
        })?;
        if &actual != diff_id {
            return Err(ImageError::DiffIdMismatch {
                diff_id: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }
}

/// Removes a leftover directory tree; `remove_dir_all` does not follow symlinks inside it.
fn remove_if_exists(path: &Path) -> Result<(), ImageError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ImageError::Io {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}
