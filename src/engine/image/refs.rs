//! `refs.json`: which images the store holds (by manifest digest) and which names point to
//! them. Read without a lock (it is replaced atomically); changed only under `refs.lock`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::ImageError;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct RefsDb {
    /// Normalised reference → manifest digest.
    #[serde(default)]
    pub refs: BTreeMap<String, Digest>,
    /// Manifest digest → what `images` and id lookups need without reading blobs.
    #[serde(default)]
    pub images: BTreeMap<Digest, ImageRecord>,
    /// Normalised reference → when it was last pulled (seconds since the epoch), for compose
    /// `pull_policy: daily|weekly|every_<duration>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pulled: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    /// Config digest: the image id.
    pub config: Digest,
    /// Config plus layer blob sizes.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `repository@manifest-digest` names this image has in registries it was pulled from or
    /// pushed to (the digest of the index when it was pulled through one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct RefsFile {
    path: PathBuf,
    lock: PathBuf,
}

impl RefsFile {
    pub(crate) fn new(path: PathBuf, lock: PathBuf) -> RefsFile {
        RefsFile { path, lock }
    }

    pub(crate) fn read(&self) -> Result<RefsDb, ImageError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ImageError::invalid(self.path.display().to_string(), "refs database", e)
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RefsDb::default()),
            Err(e) => Err(ImageError::Io {
                path: self.path.clone(),
                source: e,
            }),
        }
    }

    /// Applies `change` to the current database under the lock and writes it back atomically.
    pub(crate) fn update<T>(&self, change: impl FnOnce(&mut RefsDb) -> T) -> Result<T, ImageError> {
        let lock = File::create(&self.lock).map_err(ImageError::io(&self.lock))?;
        lock.lock().map_err(ImageError::io(&self.lock))?;
        let mut db = self.read()?;
        let out = change(&mut db);
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&db).map_err(|e| ImageError::Io {
            path: tmp.clone(),
            source: e.into(),
        })?;
        fs::write(&tmp, bytes).map_err(ImageError::io(&tmp))?;
        fs::rename(&tmp, &self.path).map_err(ImageError::io(&self.path))?;
        Ok(out)
    }
}
