//! `docker save`: images out of the store as a tar archive, in one of two formats that
//! [`ImageStore::load_path`] reads back:
//! - `docker-archive`: what Docker 25+ writes, an OCI layout (`oci-layout`, `index.json`,
//!   `blobs/sha256/…`) plus Docker's `manifest.json`, so both old and new loaders take it;
//! - `oci-archive`: the OCI image layout alone, names in `org.opencontainers.image.ref.name`
//!   (the tag) and `io.containerd.image.name` (the full name) annotations.
//!
//! Blobs are written as stored (layers keep their compression); each blob is written once even
//! when several images share it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use serde_json::{Value, json};

use super::digest::Digest;
use super::error::ImageError;
use super::reference::Reference;
use super::{ImageStore, find};

/// The archive format of `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    DockerArchive,
    OciArchive,
}

impl SaveFormat {
    pub fn parse(s: &str) -> Option<SaveFormat> {
        match s {
            "docker" | "docker-archive" => Some(SaveFormat::DockerArchive),
            "oci" | "oci-archive" => Some(SaveFormat::OciArchive),
            _ => None,
        }
    }
}

/// One image to write: its manifest and the names it is saved under.
struct Entry {
    manifest: Digest,
    names: Vec<Reference>,
}

impl ImageStore {
    /// Writes the images `names` (names, ids or id prefixes) as one archive to `out`.
    pub fn save(
        &self,
        names: &[String],
        format: SaveFormat,
        out: impl Write,
    ) -> Result<(), ImageError> {
        let db = self.refs.read()?;
        let mut entries: Vec<Entry> = Vec::new();
        for n in names {
            let (manifest, by_ref) = find(&db, n)?;
            let name = by_ref.and_then(|r| Reference::parse(&r).ok());
            match entries.iter_mut().find(|e| e.manifest == manifest) {
                Some(e) => e.names.extend(name),
                None => entries.push(Entry {
                    manifest,
                    names: name.into_iter().collect(),
                }),
            }
        }
        let mut tar = tar::Builder::new(out);
        let mut written = BTreeSet::new();
        let mut index = Vec::new();
        let mut docker = Vec::new();
        for e in &entries {
            let (m, _) = self.config_json(&e.manifest)?;
            let manifest_size = self.blobs.path(&e.manifest).metadata().map(|m| m.len());
            let manifest_size =
                manifest_size.map_err(ImageError::io(self.blobs.path(&e.manifest)))?;
            let config = m["config"]["digest"]
                .as_str()
                .and_then(Digest::parse)
                .ok_or_else(|| ImageError::invalid(e.manifest.to_string(), "manifest", "config"))?;
            let layers: Vec<Digest> = m["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["digest"].as_str().and_then(Digest::parse))
                .collect();
            for d in [&e.manifest, &config].into_iter().chain(&layers) {
                if written.insert(d.clone()) {
                    self.append_blob(&mut tar, d)?;
                }
            }
            let media = m["mediaType"]
                .as_str()
                .unwrap_or("application/vnd.oci.image.manifest.v1+json")
                .to_owned();
            let descriptor = |annotations: Value| {
                let mut d = json!({
                    "mediaType": media,
                    "digest": e.manifest.to_string(),
                    "size": manifest_size,
                });
                if !annotations.is_null() {
                    d["annotations"] = annotations;
                }
                d
            };
            if e.names.is_empty() {
                index.push(descriptor(Value::Null));
            }
            for n in &e.names {
                let mut a = BTreeMap::new();
                a.insert("io.containerd.image.name", n.to_string());
                if let Some(t) = n.tag() {
                    a.insert("org.opencontainers.image.ref.name", t.to_owned());
                }
                index.push(descriptor(json!(a)));
            }
            docker.push(json!({
                "Config": blob_path(&config),
                "RepoTags": e.names.iter().filter(|n| n.tag().is_some()).map(|n| n.short()).collect::<Vec<_>>(),
                "Layers": layers.iter().map(blob_path).collect::<Vec<_>>(),
            }));
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": index,
        });
        append_json(
            &mut tar,
            "oci-layout",
            &json!({"imageLayoutVersion": "1.0.0"}),
        )?;
        append_json(&mut tar, "index.json", &index)?;
        if format == SaveFormat::DockerArchive {
            append_json(&mut tar, "manifest.json", &json!(docker))?;
        }
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(ImageError::io("archive"))
    }

    fn append_blob<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        digest: &Digest,
    ) -> Result<(), ImageError> {
        let path = self.blobs.path(digest);
        let mut f = std::fs::File::open(&path).map_err(ImageError::io(&path))?;
        let len = f.metadata().map_err(ImageError::io(&path))?.len();
        let mut h = header(len);
        tar.append_data(&mut h, blob_path(digest), &mut f)
            .map_err(ImageError::io(&path))
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append_json<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    v: &Value,
) -> Result<(), ImageError> {
    let bytes = serde_json::to_vec(v).map_err(|e| ImageError::invalid(name, "document", e))?;
    let mut h = header(bytes.len() as u64);
    tar.append_data(&mut h, name, io::Cursor::new(bytes))
        .map_err(ImageError::io(name))
}
