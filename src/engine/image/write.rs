//! Writing new images into the store (what a build produces): layer tar blobs, the config,
//! an OCI manifest and the names. Blobs go through the same staging and atomic links as
//! imports, and `refs.json` changes last, so a crash never leaves a name pointing at nothing.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::blobs::Staging;
use super::digest::Digest;
use super::error::ImageError;
use super::load::MEDIA_OCI_MANIFEST;
use super::refs::ImageRecord;
use super::{ImageStore, parse_reference};

const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A layer blob in the store: new layers are uncompressed tars (blob digest = diff id); layers
/// of base images keep their compression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLayer {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

impl ImageStore {
    /// Adds the uncompressed layer tar at `tar` as a blob.
    pub fn add_layer(&self, tar: &Path) -> Result<StoredLayer, ImageError> {
        let mut staging = Staging::new(&self.tmp)?;
        let f = File::open(tar).map_err(ImageError::io(tar))?;
        let staged = staging.stage(f, &tar.display().to_string())?;
        self.blobs.commit(&staged)?;
        Ok(StoredLayer {
            diff_id: staged.digest.clone(),
            digest: staged.digest,
            size: staged.size,
            media_type: MEDIA_LAYER.into(),
        })
    }

    /// The unpacked directory of a stored layer, unpacking it first if needed.
    pub fn layer_dir(&self, layer: &StoredLayer) -> Result<PathBuf, ImageError> {
        self.layers
            .ensure(&self.blobs.path(&layer.digest), &layer.diff_id)
    }

    /// The layers of a resolved image, as its manifest lists them.
    pub fn image_layers(&self, image: &super::Image) -> Result<Vec<StoredLayer>, ImageError> {
        let at = &image.manifest_digest;
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(&self.blob_bytes(at)?)
                .map_err(|e| ImageError::invalid(at, "manifest", e))?;
        let diff_ids = image.config.rootfs().diff_ids();
        manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(l, d)| {
                Ok(StoredLayer {
                    digest: Digest::from_oci(l.digest())
                        .ok_or_else(|| ImageError::invalid(at, "manifest", "layer digest"))?,
                    diff_id: Digest::parse(d)
                        .ok_or_else(|| ImageError::invalid(at, "image config", "diff id"))?,
                    size: l.size(),
                    media_type: l.media_type().to_string(),
                })
            })
            .collect()
    }

    /// The raw bytes of a small JSON blob (`sha256:…`): a config or manifest, as stored.
    pub fn blob_bytes(&self, image_id: &str) -> Result<Vec<u8>, ImageError> {
        let digest = Digest::parse(image_id).ok_or_else(|| ImageError::NotFound {
            reference: image_id.to_owned(),
        })?;
        self.blobs.read_json(&digest)
    }

    /// Stores an image made of `config` (a complete image config document whose diff ids are
    /// the digests of `layers`) and points each of `tags` at it. Returns the image id.
    pub fn write_image(
        &self,
        config: &[u8],
        layers: &[StoredLayer],
        created: Option<String>,
        tags: &[String],
    ) -> Result<String, ImageError> {
        let names = tags
            .iter()
            .map(|t| parse_reference(t).map(|r| r.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut staging = Staging::new(&self.tmp)?;
        let config_blob = staging.stage(config, "image config")?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {
                "mediaType": MEDIA_CONFIG,
                "digest": config_blob.digest.to_string(),
                "size": config_blob.size,
            },
            "layers": layers.iter().map(|l| serde_json::json!({
                "mediaType": l.media_type,
                "digest": l.digest.to_string(),
                "size": l.size,
            })).collect::<Vec<_>>(),
        });
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::invalid("", "manifest", e))?;
        let manifest_blob = staging.stage(bytes.as_slice(), "manifest")?;
        for l in layers {
            if !self.has_blob(&l.digest) {
                return Err(ImageError::MissingBlob {
                    path: "build".into(),
                    digest: l.digest.to_string(),
                });
            }
        }
        self.blobs.commit(&config_blob)?;
        self.blobs.commit(&manifest_blob)?;
        let size = config_blob.size + layers.iter().map(|l| l.size).sum::<u64>();
        let id = config_blob.digest.to_string();
        self.refs.update(|db| {
            db.images.insert(
                manifest_blob.digest.clone(),
                ImageRecord {
                    config: config_blob.digest.clone(),
                    size,
                    created,
                    repo_digests: Vec::new(),
                },
            );
            for n in names {
                db.refs.insert(n, manifest_blob.digest.clone());
            }
        })?;
        Ok(id)
    }
}
