//! `docker save`: images out of the store as a tar archive, in one of two formats that
//! [`ImageStore::load_path`] reads back:
//! - `docker-archive`: what Docker 25+ writes, an OCI layout (`oci-layout`, `index.json`,
//!   `blobs/sha256/…`) plus Docker's `manifest.json`, so both old and new loaders take it;
//! - `oci-archive`: the OCI image layout alone, names in `org.opencontainers.image.ref.name`
//!   (the tag) and `io.containerd.image.name` (the full name) annotations.
//!
//! Blobs are written as stored (layers keep their compression); each blob is written once even
//! when several images share it.
//!
//! The same files can also be written to a directory ([`ImageStore::save_dir`], `save -o DIR/`
//! or `--format oci-dir`): an OCI image layout directory, as `skopeo copy … oci:DIR` and
//! `podman save --format oci-dir` write it, which `load -i DIR` reads back.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
        let mut tar = TarSink(tar::Builder::new(out));
        self.save_to(names, format, &mut tar)?;
        tar.0
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(ImageError::io("archive"))
    }

    /// Writes the images `names` as an image layout directory `dir` (with Docker's
    /// `manifest.json` too for `docker-archive`). `dir` must not exist or be empty; the files
    /// are written next to it first and renamed into place when complete, so a failed save
    /// leaves nothing half-written.
    pub fn save_dir(
        &self,
        names: &[String],
        format: SaveFormat,
        dir: &Path,
    ) -> Result<(), ImageError> {
        let occupied = match std::fs::read_dir(dir) {
            Ok(mut entries) => entries.next().is_some(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(ImageError::io(dir)(e)),
        };
        if occupied {
            return Err(ImageError::io(dir)(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the output directory exists and is not empty",
            )));
        }
        let name = dir.file_name().unwrap_or_else(|| "layout".as_ref());
        let mut tmp_name = name.to_owned();
        tmp_name.push(format!(".partial-{}", std::process::id()));
        let tmp = dir.with_file_name(tmp_name);
        std::fs::create_dir_all(tmp.join("blobs/sha256")).map_err(ImageError::io(&tmp))?;
        let mut sink = DirSink(tmp.clone());
        let res = self
            .save_to(names, format, &mut sink)
            .and_then(|()| std::fs::rename(&tmp, dir).map_err(ImageError::io(dir)));
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        res
    }

    fn save_to(
        &self,
        names: &[String],
        format: SaveFormat,
        tar: &mut dyn Sink,
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
                    tar.blob(&blob_path(d), &self.blobs.path(d))?;
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
        json_file(tar, "oci-layout", &json!({"imageLayoutVersion": "1.0.0"}))?;
        json_file(tar, "index.json", &index)?;
        if format == SaveFormat::DockerArchive {
            json_file(tar, "manifest.json", &json!(docker))?;
        }
        Ok(())
    }
}

/// Where `save` writes its files: a tar archive or a directory.
trait Sink {
    /// Copies the stored blob at `src` to `name`.
    fn blob(&mut self, name: &str, src: &Path) -> Result<(), ImageError>;
    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<(), ImageError>;
}

struct TarSink<W: Write>(tar::Builder<W>);

impl<W: Write> Sink for TarSink<W> {
    fn blob(&mut self, name: &str, src: &Path) -> Result<(), ImageError> {
        let mut f = std::fs::File::open(src).map_err(ImageError::io(src))?;
        let len = f.metadata().map_err(ImageError::io(src))?.len();
        let mut h = header(len);
        self.0
            .append_data(&mut h, name, &mut f)
            .map_err(ImageError::io(src))
    }

    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let mut h = header(bytes.len() as u64);
        self.0
            .append_data(&mut h, name, bytes)
            .map_err(ImageError::io(name))
    }
}

/// A directory being filled; names are the fixed layout paths above, never user input.
struct DirSink(PathBuf);

impl Sink for DirSink {
    fn blob(&mut self, name: &str, src: &Path) -> Result<(), ImageError> {
        // A copy, not a hard link: the saved layout must not share inodes with the store.
        let dest = self.0.join(name);
        std::fs::copy(src, &dest).map_err(ImageError::io(&dest))?;
        Ok(())
    }

    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let dest = self.0.join(name);
        std::fs::write(&dest, bytes).map_err(ImageError::io(&dest))
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

fn json_file(sink: &mut dyn Sink, name: &str, v: &Value) -> Result<(), ImageError> {
    let bytes = serde_json::to_vec(v).map_err(|e| ImageError::invalid(name, "document", e))?;
    sink.file(name, &bytes)
}
