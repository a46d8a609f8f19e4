//! `push`: an image of the store (or several, as one multi-platform index) to a registry.
//!
//! Per blob: skip it when the registry has it (`HEAD`), else mount it from another repository
//! of the same registry that is known to hold it (images in the store named there), else
//! upload it in chunks, streamed from the stored file. The manifest is sent byte for byte as
//! stored, so its digest stays the image's digest everywhere.

use std::collections::BTreeSet;

use futures::StreamExt;
use oci_client::RegistryOperation;
use serde_json::{Value, json};

use super::client::{Connection, connect};
use super::error::RegistryError;
use super::platform::Platform;
use super::pull::{MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, oci_ref};
use super::{BlobEvent, Progress, RegistryConfig, short};
use crate::engine::image::{Digest, ImageRecord, ImageStore, Reference};

/// Chunk size of uploads (and of reads from the stored blob).
const CHUNK: usize = 4 << 20;

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// Digest of the manifest (or index) the tag now points to.
    pub digest: Digest,
    /// Bytes uploaded (mounted and existing blobs excluded).
    pub uploaded: u64,
    pub size: u64,
}

/// One platform's image for [`ImageStore::push_index_with`].
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// A name or id of an image in the store.
    pub image: String,
    pub platform: Platform,
}

struct Stored {
    digest: Digest,
    bytes: Vec<u8>,
    media_type: String,
    blobs: Vec<(Digest, u64)>,
}

impl ImageStore {
    /// `docker push`: the image `reference` names in the store, to that reference.
    pub async fn push_with(
        &self,
        config: &RegistryConfig,
        reference: &str,
        progress: &dyn Progress,
    ) -> Result<PushOutcome, RegistryError> {
        let r = parse(reference)?;
        let stored = self.stored(reference, &r)?;
        let conn = connect(config, r.domain()).await?;
        let oref = oci_ref(&r);
        authorize(&conn, &oref, &r).await?;
        let uploaded = self
            .push_blobs(&conn, &r, &stored, config, progress)
            .await?;
        put_manifest(&conn, &oref, &r, &stored.bytes, &stored.media_type).await?;
        self.remember(&r, &stored.digest)?;
        progress.message(&format!(
            "{}: digest: {} size: {}",
            r.tag().unwrap_or("latest"),
            stored.digest,
            stored.bytes.len()
        ));
        Ok(PushOutcome {
            digest: stored.digest,
            uploaded,
            size: stored.bytes.len() as u64,
        })
    }

    /// Pushes each entry's image by digest, then an OCI index listing them under `target`.
    pub async fn push_index_with(
        &self,
        config: &RegistryConfig,
        target: &str,
        entries: &[IndexEntry],
        progress: &dyn Progress,
    ) -> Result<PushOutcome, RegistryError> {
        let r = parse(target)?;
        let conn = connect(config, r.domain()).await?;
        let oref = oci_ref(&r);
        authorize(&conn, &oref, &r).await?;
        let mut uploaded = 0;
        let mut manifests = Vec::new();
        for e in entries {
            let stored = self.stored(&e.image, &r)?;
            uploaded += self
                .push_blobs(&conn, &r, &stored, config, progress)
                .await?;
            let by_digest = oci_client::Reference::with_digest(
                r.domain().into(),
                r.path().into(),
                stored.digest.to_string(),
            );
            put_manifest(&conn, &by_digest, &r, &stored.bytes, &stored.media_type).await?;
            let mut platform =
                json!({"os": e.platform.os, "architecture": e.platform.architecture});
            if let Some(v) = &e.platform.variant {
                platform["variant"] = json!(v);
            }
            manifests.push(json!({
                "mediaType": stored.media_type,
                "digest": stored.digest.to_string(),
                "size": stored.bytes.len(),
                "platform": platform,
            }));
        }
        let index =
            json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": manifests});
        let bytes = serde_json::to_vec(&index).expect("a json value serialises");
        put_manifest(&conn, &oref, &r, &bytes, MEDIA_OCI_INDEX).await?;
        let digest = self.put_blob(&bytes).map_err(RegistryError::store(&r))?;
        progress.message(&format!("{}: digest: {digest} size: {}", r, bytes.len()));
        Ok(PushOutcome {
            digest,
            uploaded,
            size: bytes.len() as u64,
        })
    }

    fn stored(&self, name: &str, r: &Reference) -> Result<Stored, RegistryError> {
        let digest = self.find_manifest(name).map_err(RegistryError::store(r))?;
        let bytes = self.read_blob(&digest).map_err(RegistryError::store(r))?;
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::invalid(r, "manifest", e))?;
        let media_type = v["mediaType"]
            .as_str()
            .unwrap_or(MEDIA_OCI_MANIFEST)
            .to_owned();
        let mut blobs = Vec::new();
        let mut seen = BTreeSet::new();
        for d in std::iter::once(&v["config"]).chain(v["layers"].as_array().into_iter().flatten()) {
            let digest = d["digest"]
                .as_str()
                .and_then(Digest::parse)
                .ok_or_else(|| {
                    RegistryError::invalid(r, "manifest", "a descriptor has no sha256 digest")
                })?;
            if seen.insert(digest.clone()) {
                blobs.push((digest, d["size"].as_u64().unwrap_or(0)));
            }
        }
        Ok(Stored {
            digest,
            bytes,
            media_type,
            blobs,
        })
    }

    async fn push_blobs(
        &self,
        conn: &Connection,
        r: &Reference,
        stored: &Stored,
        config: &RegistryConfig,
        progress: &dyn Progress,
    ) -> Result<u64, RegistryError> {
        let oref = oci_ref(r);
        let sources = self.mount_sources(r);
        let results: Vec<Result<u64, RegistryError>> =
            futures::stream::iter(stored.blobs.iter().map(|(digest, size)| {
                let (oref, sources) = (&oref, &sources);
                async move {
                    self.push_blob(conn, r, oref, sources, digest, *size, progress)
                        .await
                }
            }))
            .buffer_unordered(config.parallel.max(1))
            .collect()
            .await;
        results.into_iter().sum()
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_blob(
        &self,
        conn: &Connection,
        r: &Reference,
        oref: &oci_client::Reference,
        sources: &[(Reference, BTreeSet<Digest>)],
        digest: &Digest,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<u64, RegistryError> {
        let id = short(&digest.to_string());
        let d = digest.to_string();
        let exists = conn
            .client
            .blob_exists(oref, &d)
            .await
            .map_err(RegistryError::remote(r, "checking a blob"))?;
        if exists {
            progress.blob(&id, BlobEvent::Exists);
            return Ok(0);
        }
        for (source, blobs) in sources {
            if blobs.contains(digest)
                && conn
                    .client
                    .mount_blob(oref, &oci_ref(source), &d)
                    .await
                    .is_ok()
            {
                progress.blob(&id, BlobEvent::Mounted);
                return Ok(0);
            }
        }
        let path = self.blob_path(digest);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| RegistryError::io(&path, e))?;
        let stream = futures::stream::unfold(file, |mut f| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match f.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => return Some((Err(e.into()), f)),
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            Some((Ok(bytes::Bytes::from(buf)), f))
        });
        progress.blob(
            &id,
            BlobEvent::Transfer {
                done: 0,
                total: size,
            },
        );
        conn.client
            .push_blob_stream(oref, stream, &d, Some(size))
            .await
            .map_err(RegistryError::remote(r, "uploading a blob"))?;
        progress.blob(&id, BlobEvent::Complete);
        Ok(size)
    }

    /// Other repositories of `r`'s registry that hold images of the store, with their blobs:
    /// the registry can mount those blobs instead of receiving them again.
    fn mount_sources(&self, r: &Reference) -> Vec<(Reference, BTreeSet<Digest>)> {
        let mut out: Vec<(Reference, BTreeSet<Digest>)> = Vec::new();
        let Ok(list) = self.list() else {
            return out;
        };
        let mut names: Vec<String> = list.into_iter().filter_map(|i| i.reference).collect();
        names.extend(self.repo_digests());
        for name in names {
            let Ok(other) = Reference::parse(&name) else {
                continue;
            };
            if other.domain() != r.domain() || other.path() == r.path() {
                continue;
            }
            let Ok(stored) = self.stored(&name, r) else {
                continue;
            };
            let blobs = stored.blobs.into_iter().map(|(d, _)| d).collect();
            out.push((other, blobs));
        }
        out
    }

    /// Records that the registry now has `manifest` under `r` (for later mounts and inspect).
    fn remember(&self, r: &Reference, manifest: &Digest) -> Result<(), RegistryError> {
        if let Some(mut record) = self.record_of(manifest) {
            record.repo_digests = vec![format!("{}@{manifest}", r.repository())];
            self.record(&[], manifest, record)
                .map_err(RegistryError::store(r))?;
        }
        Ok(())
    }

    fn record_of(&self, manifest: &Digest) -> Option<ImageRecord> {
        self.records().ok()?.remove(manifest)
    }
}

fn parse(reference: &str) -> Result<Reference, RegistryError> {
    Reference::parse(reference).map_err(|e| RegistryError::invalid(reference, "reference", e))
}

async fn authorize(
    conn: &Connection,
    oref: &oci_client::Reference,
    r: &Reference,
) -> Result<(), RegistryError> {
    conn.client
        .auth(oref, &conn.auth, RegistryOperation::Push)
        .await
        .map_err(RegistryError::remote(r, "authenticating for push"))?;
    Ok(())
}

async fn put_manifest(
    conn: &Connection,
    oref: &oci_client::Reference,
    r: &Reference,
    bytes: &[u8],
    media_type: &str,
) -> Result<(), RegistryError> {
    let content_type = media_type
        .parse()
        .map_err(|_| RegistryError::invalid(r, "manifest", "media type is not a header value"))?;
    conn.client
        .push_manifest_raw(oref, bytes.to_vec(), content_type)
        .await
        .map_err(RegistryError::remote(r, "uploading the manifest"))?;
    Ok(())
}
