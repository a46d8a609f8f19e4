//! The store's lifecycle: `image inspect`, `image history`, `image rm`, `image prune` and the
//! garbage collection of blobs and layers no image references.
//!
//! Removing an image only drops names and records; the bytes go in [`ImageStore::gc`], which
//! keeps every blob a remaining image references and every layer directory an image or a
//! container (`containers/*/container.json`, its `layers` list) uses.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::digest::Digest;
use super::error::ImageError;
use super::reference::Reference;
use super::{ImageStore, find};

/// What `image rm` / `prune` did, in docker's words.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Names removed (`Untagged: …`).
    pub untagged: Vec<String>,
    /// Image ids whose record went (`Deleted: …`).
    pub deleted: Vec<String>,
    /// Bytes freed on disk by the garbage collection.
    pub reclaimed: u64,
}

/// One row of `image history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub created: Option<String>,
    pub created_by: String,
    pub comment: String,
    pub empty_layer: bool,
}

impl ImageStore {
    pub(super) fn config_json(&self, manifest: &Digest) -> Result<(Value, Value), ImageError> {
        let at = manifest.to_string();
        let m: Value = serde_json::from_slice(&self.blobs.read_json(manifest)?)
            .map_err(|e| ImageError::invalid(&at, "manifest", e))?;
        let config = m["config"]["digest"]
            .as_str()
            .and_then(Digest::parse)
            .ok_or_else(|| ImageError::invalid(&at, "manifest", "no config digest"))?;
        let c: Value = serde_json::from_slice(&self.blobs.read_json(&config)?)
            .map_err(|e| ImageError::invalid(config.to_string(), "image config", e))?;
        Ok((m, c))
    }

    /// `docker image inspect` for one image: docker's field names.
    pub fn inspect(&self, name: &str) -> Result<Value, ImageError> {
        let db = self.refs.read()?;
        let (manifest, _) = find(&db, name)?;
        let record = db
            .images
            .get(&manifest)
            .ok_or_else(|| ImageError::NotFound {
                reference: name.to_owned(),
            })?;
        let (_, config) = self.config_json(&manifest)?;
        let tags: Vec<String> = db
            .refs
            .iter()
            .filter(|(n, d)| {
                **d == manifest && Reference::parse(n).is_ok_and(|r| r.tag().is_some())
            })
            .map(|(n, _)| n.clone())
            .collect();
        Ok(json!({
            "Id": record.config.to_string(),
            "RepoTags": tags,
            "RepoDigests": record.repo_digests,
            "Created": config["created"],
            "Author": config.get("author").cloned().unwrap_or(json!("")),
            "Architecture": config["architecture"],
            "Variant": config.get("variant"),
            "Os": config["os"],
            "Config": config.get("config").cloned().unwrap_or(json!({})),
            "RootFS": {"Type": "layers", "Layers": config["rootfs"]["diff_ids"]},
            "Size": record.size,
            "Descriptor": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest.to_string(),
            },
        }))
    }

    /// `docker image history`: the config's history, newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryRow>, ImageError> {
        let (manifest, _) = find(&self.refs.read()?, name)?;
        let (_, config) = self.config_json(&manifest)?;
        let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let mut rows: Vec<HistoryRow> = config["history"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| HistoryRow {
                created: h["created"].as_str().map(str::to_owned),
                created_by: s(h, "created_by"),
                comment: s(h, "comment"),
                empty_layer: h["empty_layer"].as_bool().unwrap_or(false),
            })
            .collect();
        rows.reverse();
        Ok(rows)
    }

    /// `docker image rm`: a name drops that name; an id drops the image with all its names
    /// (several names need `force`). An image whose layers a container uses is kept unless
    /// `force`. The record goes when no name is left.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        containers: &Path,
    ) -> Result<Removed, ImageError> {
        let db = self.refs.read()?;
        let (manifest, by_ref) = find(&db, name)?;
        let names: Vec<String> = match &by_ref {
            Some(n) => vec![n.clone()],
            None => db
                .refs
                .iter()
                .filter(|(_, d)| **d == manifest)
                .map(|(n, _)| n.clone())
                .collect(),
        };
        if by_ref.is_none() && names.len() > 1 && !force {
            return Err(ImageError::Conflict {
                reference: name.to_owned(),
                reason: format!(
                    "it is referenced by {} names ({}); remove them one by one or use --force",
                    names.len(),
                    names.join(", ")
                ),
            });
        }
        let remaining = db.refs.values().filter(|d| **d == manifest).count() - names.len();
        if remaining == 0 && !force {
            let used = container_layers(containers);
            let layers = self.layer_dirs(&manifest)?;
            if !layers.is_empty() && layers.iter().all(|l| used.contains(l)) {
                return Err(ImageError::Conflict {
                    reference: name.to_owned(),
                    reason: "a container uses it; remove the container first or use --force".into(),
                });
            }
        }
        self.refs.update(|db| {
            let mut out = Removed::default();
            for n in &names {
                if db.refs.remove(n).is_some() {
                    out.untagged.push(n.clone());
                }
            }
            if !db.refs.values().any(|d| *d == manifest)
                && let Some(r) = db.images.remove(&manifest)
            {
                out.deleted.push(r.config.to_string());
            }
            out
        })
    }

    /// `docker image prune`: images without a name (`all`: also named ones no container
    /// uses), then the garbage collection.
    pub fn prune(&self, all: bool, containers: &Path) -> Result<Removed, ImageError> {
        let used = container_layers(containers);
        let db = self.refs.read()?;
        let mut victims = Vec::new();
        for manifest in db.images.keys() {
            let named = db.refs.values().any(|d| d == manifest);
            if named && !all {
                continue;
            }
            let layers = self.layer_dirs(manifest).unwrap_or_default();
            if all && !layers.is_empty() && layers.iter().all(|l| used.contains(l)) {
                continue;
            }
            victims.push(manifest.clone());
        }
        let mut out = self.refs.update(|db| {
            let mut out = Removed::default();
            for m in &victims {
                let names: Vec<String> = db
                    .refs
                    .iter()
                    .filter(|(_, d)| *d == m)
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in names {
                    db.refs.remove(&n);
                    out.untagged.push(n);
                }
                if let Some(r) = db.images.remove(m) {
                    out.deleted.push(r.config.to_string());
                }
            }
            out
        })?;
        out.reclaimed = self.gc(containers)?;
        Ok(out)
    }

    /// Deletes blobs no image references and layer directories neither an image nor a
    /// container uses, and stale partial downloads. Returns the bytes freed.
    pub fn gc(&self, containers: &Path) -> Result<u64, ImageError> {
        let lock_path = self.root.join("refs.lock");
        let lock = fs::File::create(&lock_path).map_err(ImageError::io(&lock_path))?;
        lock.lock().map_err(ImageError::io(&lock_path))?;
        let db = self.refs.read()?;
        let mut keep_blobs: BTreeSet<String> = BTreeSet::new();
        let mut keep_layers: BTreeSet<PathBuf> = container_layers(containers);
        for (manifest, record) in &db.images {
            keep_blobs.insert(manifest.hex().to_owned());
            keep_blobs.insert(record.config.hex().to_owned());
            for rd in &record.repo_digests {
                if let Some(d) = rd.rsplit_once('@').and_then(|(_, d)| Digest::parse(d)) {
                    keep_blobs.insert(d.hex().to_owned());
                }
            }
            let Ok((m, c)) = self.config_json(manifest) else {
                continue;
            };
            for l in m["layers"].as_array().into_iter().flatten() {
                if let Some(d) = l["digest"].as_str().and_then(Digest::parse) {
                    keep_blobs.insert(d.hex().to_owned());
                }
            }
            for d in c["rootfs"]["diff_ids"].as_array().into_iter().flatten() {
                if let Some(d) = d.as_str().and_then(Digest::parse) {
                    keep_layers.insert(self.layers.path(&d));
                }
            }
        }
        let mut freed = 0;
        let blob_dir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&blob_dir)
            .map_err(ImageError::io(&blob_dir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep_blobs.contains(&name) {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(ImageError::io(e.path()))?;
            }
        }
        let layer_dir = self.root.join("layers");
        for e in fs::read_dir(&layer_dir)
            .map_err(ImageError::io(&layer_dir))?
            .flatten()
        {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            // `.tmp-*` belong to unpacks in progress (or are redone by the next one).
            if name.starts_with('.') || keep_layers.contains(&path) {
                continue;
            }
            freed += dir_size(&path);
            // remove_dir_all does not follow symlinks inside the layer.
            fs::remove_dir_all(&path).map_err(ImageError::io(&path))?;
        }
        crate::engine::rootfs::prune_short_links(&self.root.join("l"));
        freed += self.clean_downloads()?;
        Ok(freed)
    }

    /// The unpacked layer directories an image uses (present or not).
    fn layer_dirs(&self, manifest: &Digest) -> Result<Vec<PathBuf>, ImageError> {
        let (_, c) = self.config_json(manifest)?;
        Ok(c["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().and_then(Digest::parse))
            .map(|d| self.layers.path(&d))
            .collect())
    }
}

/// Every layer directory some container's record lists.
fn container_layers(containers: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(entries) = fs::read_dir(containers) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(bytes) = fs::read(e.path().join("container.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        for l in v["layers"].as_array().into_iter().flatten() {
            if let Some(p) = l.as_str() {
                out.insert(PathBuf::from(p));
            }
        }
    }
    out
}

/// Bytes of the regular files under `path` (symlinks not followed).
pub fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}
