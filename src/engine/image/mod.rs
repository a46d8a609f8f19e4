//! The image store: content-addressed OCI blobs, names pointing at manifests, and layers
//! unpacked once and shared between images as overlayfs lower directories.
//!
//! Design decision: everything is keyed by digest and becomes visible only by an atomic rename
//! or link after it was verified (blob digests while copying, diff ids after unpacking), so a
//! crash at any point leaves at worst unreferenced temp files, never a wrong blob or layer.
//!
//! On disk, under the root the caller passes (`<state>/images`):
//! - `blobs/sha256/<hex>`: manifests, configs and layer blobs;
//! - `refs.json` (+ `refs.lock`): normalised reference → manifest digest, and per manifest its
//!   config digest (the image id), size and creation time;
//! - `layers/<diff-id hex>/`: unpacked layers, whiteouts in overlayfs form;
//! - `locks/`: per-layer unpack and per-blob download locks; `tmp/`: staging directories of
//!   running imports; `downloads/<hex>`: partial blobs of pulls, resumed by the next pull.

mod blobs;
pub mod digest;
mod download;
mod error;
mod filter;
mod layers;
mod load;
mod manage;
pub mod reference;
mod refs;
mod save;
pub mod unpack;
pub mod write;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageManifest};

use blobs::{Blobs, Staging};
pub use digest::Digest;
pub use download::Download;
pub use error::ImageError;
pub use filter::Filter;
use layers::Layers;
use load::Source;
pub use load::host_arch;
pub use manage::{HistoryRow, Removed, dir_size};
pub use reference::{Reference, ReferenceError};
pub(crate) use refs::ImageRecord;
use refs::{RefsDb, RefsFile};
pub use save::SaveFormat;

/// An image store rooted at one directory. Cheap to open; safe to use from several processes.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    blobs: Blobs,
    layers: Layers,
    refs: RefsFile,
    tmp: PathBuf,
    downloads: PathBuf,
}

/// An image resolved for running: its config and its unpacked layers.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:<config digest hex>`, as docker shows image ids.
    pub id: String,
    /// The normalised reference it was resolved by, if it was resolved by name.
    pub reference: Option<String>,
    pub manifest_digest: String,
    pub config: ImageConfiguration,
    /// Unpacked layer directories, lowest first, all present on disk.
    pub layers: Vec<PathBuf>,
    /// Docker's `config.Healthcheck` (`HEALTHCHECK`), which the OCI config type does not
    /// carry.
    pub healthcheck: Option<crate::engine::build::config::Healthcheck>,
}

/// The part of a Docker image config the OCI type drops that containers need.
#[derive(Debug, Default, serde::Deserialize)]
struct DockerExtras {
    #[serde(default)]
    config: Option<DockerExtrasConfig>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct DockerExtrasConfig {
    #[serde(default, rename = "Healthcheck")]
    healthcheck: Option<crate::engine::build::config::Healthcheck>,
}

/// One row of `images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The full normalised reference, `None` for an untagged image.
    pub reference: Option<String>,
    /// Repository as docker displays it (`busybox`, `localhost:5000/a/b`), or `<none>`.
    pub repository: String,
    /// Tag, or `<none>`.
    pub tag: String,
    /// `sha256:<config digest hex>`.
    pub id: String,
    /// The config's `created` time (RFC 3339), if any.
    pub created: Option<String>,
    /// Config plus layer blob sizes in bytes (compressed, as stored).
    pub size: u64,
}

const NONE: &str = "<none>";

impl ImageStore {
    /// Opens the store at `root`, creating its directories.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        let store = ImageStore {
            root: root.to_owned(),
            blobs: Blobs::new(root.join("blobs").join("sha256")),
            layers: Layers::new(root.join("layers"), root.join("locks")),
            refs: RefsFile::new(root.join("refs.json"), root.join("refs.lock")),
            tmp: root.join("tmp"),
            downloads: root.join("downloads"),
        };
        for dir in ["blobs/sha256", "layers", "locks", "tmp", "downloads"] {
            let dir = root.join(dir);
            fs::create_dir_all(&dir).map_err(ImageError::io(&dir))?;
        }
        blobs::clean_stale(&store.tmp)?;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a stored blob (which may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.path(digest)
    }

    /// True when the blob is stored (complete and verified).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs.path(digest).is_file()
    }

    /// Starts or resumes the download of a blob of `size` bytes (see [`Download`]).
    pub fn download(&self, digest: &Digest, size: u64) -> Result<Download, ImageError> {
        Download::open(
            digest,
            size,
            self.downloads.join(digest.hex()),
            self.blobs.path(digest),
            self.root
                .join("locks")
                .join(format!("blob-{}.lock", digest.hex())),
        )
    }

    /// Stores a small document (manifest, config) whose digest the caller has checked.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        let digest = Digest::of(bytes);
        let dest = self.blobs.path(&digest);
        if dest.is_file() {
            return Ok(digest);
        }
        let tmp = self.tmp.join(format!(
            "blob-{}-{:08x}",
            digest.hex(),
            rand::random::<u32>()
        ));
        fs::write(&tmp, bytes).map_err(ImageError::io(&tmp))?;
        fs::rename(&tmp, &dest).map_err(ImageError::io(&dest))?;
        Ok(digest)
    }

    /// Reads a stored JSON document (manifest, index, config), bounded in size.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        self.blobs.read_json(digest)
    }

    /// Unpacks the stored layer blob `blob` whose uncompressed digest must be `diff_id`, unless
    /// that layer is unpacked already. Safe to call for several layers in parallel.
    pub fn unpack(&self, blob: &Digest, diff_id: &Digest) -> Result<PathBuf, ImageError> {
        self.layers.ensure(&self.blobs.path(blob), diff_id)
    }

    /// Unpacks the layer `diff_id` from `blob` (its bytes as they arrive, compressed or not)
    /// unless it is unpacked already. The layer becomes visible only when the uncompressed
    /// content's digest is `diff_id`; `blob` is read only when the layer is missing.
    pub fn unpack_from(
        &self,
        blob: impl std::io::Read,
        diff_id: &Digest,
    ) -> Result<PathBuf, ImageError> {
        self.layers.ensure_from(diff_id, || Ok(blob))
    }

    /// Deletes partial downloads no pull is working on; returns the bytes freed.
    pub fn clean_downloads(&self) -> Result<u64, ImageError> {
        download::clean_partials(&self.downloads, &self.root.join("locks"))
            .map_err(ImageError::io(&self.downloads))
    }

    /// True when the layer with this diff id is unpacked.
    pub fn layer_dir_exists(&self, diff_id: &Digest) -> bool {
        self.layers.path(diff_id).is_dir()
    }

    /// Every image record, by manifest digest.
    pub(crate) fn records(
        &self,
    ) -> Result<std::collections::BTreeMap<Digest, ImageRecord>, ImageError> {
        Ok(self.refs.read()?.images)
    }

    /// Every `repository@digest` the store's images are known by in registries.
    pub(crate) fn repo_digests(&self) -> Vec<String> {
        self.records()
            .map(|r| r.into_values().flat_map(|r| r.repo_digests).collect())
            .unwrap_or_default()
    }

    /// Records an image whose manifest, config and layer blobs are all stored, and points
    /// `names` at it.
    pub(crate) fn record(
        &self,
        names: &[Reference],
        manifest: &Digest,
        record: ImageRecord,
    ) -> Result<(), ImageError> {
        self.refs.update(|db| {
            let entry = db
                .images
                .entry(manifest.clone())
                .or_insert_with(|| record.clone());
            for d in record.repo_digests {
                if !entry.repo_digests.contains(&d) {
                    entry.repo_digests.push(d);
                }
            }
            for n in names {
                db.refs.insert(n.to_string(), manifest.clone());
            }
        })
    }

    /// When `reference` was last pulled, if berth pulled it.
    pub fn last_pulled(
        &self,
        reference: &str,
    ) -> Result<Option<std::time::SystemTime>, ImageError> {
        let name = parse_reference(reference)?.to_string();
        Ok(self
            .refs
            .read()?
            .pulled
            .get(&name)
            .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(*s)))
    }

    /// Records that `reference` was pulled now.
    pub(crate) fn mark_pulled(&self, reference: &Reference) -> Result<(), ImageError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        self.refs.update(|db| {
            db.pulled.insert(reference.to_string(), now);
        })
    }

    /// The manifest digest a user's string (name, id or prefix) resolves to, without unpacking.
    pub fn find_manifest(&self, reference: &str) -> Result<Digest, ImageError> {
        Ok(find(&self.refs.read()?, reference)?.0)
    }

    /// `docker load` from a `docker save` tar, an OCI layout tar (both possibly gzip or zstd
    /// compressed) or an OCI layout directory. Returns the normalised references loaded, or the
    /// image ids of images that came without a name.
    pub fn load_path(&self, path: &Path) -> Result<Vec<String>, ImageError> {
        let name = path.display().to_string();
        let mut staging = Staging::new(&self.tmp)?;
        let mut src = if path.is_dir() {
            Source::Dir(path.to_owned())
        } else {
            let f = File::open(path).map_err(ImageError::io(path))?;
            Source::from_tar(f, &mut staging, &name)?
        };
        self.import(&mut src, &mut staging, &name)
    }

    /// `docker load` from a stream (stdin): a `docker save` or OCI layout tar.
    pub fn load_reader(&self, r: impl Read) -> Result<Vec<String>, ImageError> {
        let name = "archive";
        let mut staging = Staging::new(&self.tmp)?;
        let mut src = Source::from_tar(r, &mut staging, name)?;
        self.import(&mut src, &mut staging, name)
    }

    fn import(
        &self,
        src: &mut Source,
        staging: &mut Staging,
        name: &str,
    ) -> Result<Vec<String>, ImageError> {
        let images = load::read_images(src, staging, name)?;
        for image in &images {
            for staged in [&image.manifest, &image.config]
                .into_iter()
                .chain(&image.layers)
            {
                self.blobs.commit(staged)?;
            }
        }
        self.refs.update(|db| {
            let mut loaded = Vec::new();
            for image in &images {
                let size = image.config.size + image.layers.iter().map(|l| l.size).sum::<u64>();
                db.images.insert(
                    image.manifest.digest.clone(),
                    ImageRecord {
                        config: image.config.digest.clone(),
                        size,
                        created: image.created.clone(),
                        repo_digests: Vec::new(),
                    },
                );
                for r in &image.names {
                    db.refs.insert(r.to_string(), image.manifest.digest.clone());
                    loaded.push(r.to_string());
                }
                if image.names.is_empty() {
                    loaded.push(image.config.digest.to_string());
                }
            }
            loaded
        })
    }

    /// Points the reference `target` at the image `source` resolves to (`docker tag`).
    pub fn tag(&self, source: &str, target: &str) -> Result<String, ImageError> {
        let target = parse_reference(target)?;
        let (manifest, _) = find(&self.refs.read()?, source)?;
        let name = target.to_string();
        self.refs
            .update(|db| db.refs.insert(name.clone(), manifest))?;
        Ok(name)
    }

    /// Finds an image by short name, full reference, or image id (`sha256:…` or a unique hex
    /// prefix), and unpacks its layers if they are not yet.
    pub fn resolve(&self, reference: &str) -> Result<Image, ImageError> {
        let (manifest_digest, by_ref) = find(&self.refs.read()?, reference)?;
        let at = manifest_digest.to_string();
        let manifest: ImageManifest =
            serde_json::from_slice(&self.blobs.read_json(&manifest_digest)?)
                .map_err(|e| ImageError::invalid(&at, "manifest", e))?;
        let config_digest = Digest::from_oci(manifest.config().digest())
            .ok_or_else(|| ImageError::invalid(&at, "manifest", "config digest is not sha256"))?;
        let raw = self.blobs.read_json(&config_digest)?;
        let config: ImageConfiguration = serde_json::from_slice(&raw)
            .map_err(|e| ImageError::invalid(config_digest.to_string(), "image config", e))?;
        let healthcheck = serde_json::from_slice::<DockerExtras>(&raw)
            .ok()
            .and_then(|x| x.config?.healthcheck);
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::invalid(
                &at,
                "image",
                "layer and diff id counts differ",
            ));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let blob = Digest::from_oci(layer.digest()).ok_or_else(|| {
                ImageError::invalid(&at, "manifest", "layer digest is not sha256")
            })?;
            let diff_id = Digest::parse(diff_id)
                .ok_or_else(|| ImageError::invalid(&at, "image config", "diff id is not sha256"))?;
            layers.push(self.layers.ensure(&self.blobs.path(&blob), &diff_id)?);
        }
        Ok(Image {
            id: config_digest.to_string(),
            reference: by_ref,
            manifest_digest: at,
            config,
            layers,
            healthcheck,
        })
    }

    /// All images: one row per name, plus one `<none>` row per image without a name.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let db = self.refs.read()?;
        let mut rows = Vec::new();
        let mut named = BTreeSet::new();
        for (name, manifest) in &db.refs {
            let Some(record) = db.images.get(manifest) else {
                continue;
            };
            named.insert(manifest);
            let (repository, tag) = match Reference::parse(name) {
                Ok(r) => (r.short_name(), r.tag().unwrap_or(NONE).to_owned()),
                Err(_) => (name.clone(), NONE.to_owned()),
            };
            rows.push(summary(Some(name.clone()), repository, tag, record));
        }
        for (manifest, record) in &db.images {
            if !named.contains(manifest) {
                rows.push(summary(None, NONE.into(), NONE.into(), record));
            }
        }
        Ok(rows)
    }
}

fn summary(
    reference: Option<String>,
    repository: String,
    tag: String,
    r: &ImageRecord,
) -> ImageSummary {
    ImageSummary {
        reference,
        repository,
        tag,
        id: r.config.to_string(),
        created: r.created.clone(),
        size: r.size,
    }
}

fn parse_reference(s: &str) -> Result<Reference, ImageError> {
    Reference::parse(s).map_err(|source| ImageError::InvalidReference {
        reference: s.to_owned(),
        source,
    })
}

/// Finds the manifest a user's string names: a reference first, then an image id or prefix.
fn find(db: &RefsDb, s: &str) -> Result<(Digest, Option<String>), ImageError> {
    let not_found = || ImageError::NotFound {
        reference: s.to_owned(),
    };
    let id_prefix = s.strip_prefix("sha256:").unwrap_or(s);
    let is_hex = !id_prefix.is_empty()
        && id_prefix
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !s.starts_with("sha256:") {
        match Reference::parse(s) {
            Ok(r) => {
                let name = r.to_string();
                if let Some(d) = db.refs.get(&name) {
                    return Ok((d.clone(), Some(name)));
                }
                // `repo@digest`: any image of that repository with that manifest digest.
                if let Some(digest) = r.digest().and_then(Digest::parse)
                    && db.images.contains_key(&digest)
                    && db.refs.iter().any(|(n, d)| {
                        *d == digest
                            && Reference::parse(n).is_ok_and(|n| n.repository() == r.repository())
                    })
                {
                    return Ok((digest, Some(name)));
                }
            }
            Err(source) if !is_hex => {
                return Err(ImageError::InvalidReference {
                    reference: s.to_owned(),
                    source,
                });
            }
            Err(_) => {}
        }
    }
    if !is_hex {
        return Err(not_found());
    }
    let matches: Vec<(&Digest, &ImageRecord)> = db
        .images
        .iter()
        .filter(|(_, r)| r.config.hex().starts_with(id_prefix))
        .collect();
    let configs: BTreeSet<&Digest> = matches.iter().map(|(_, r)| &r.config).collect();
    match (matches.first(), configs.len()) {
        (None, _) => Err(not_found()),
        (Some((manifest, _)), 1) => Ok(((*manifest).clone(), None)),
        (_, count) => Err(ImageError::Ambiguous {
            prefix: s.to_owned(),
            count,
        }),
    }
}
