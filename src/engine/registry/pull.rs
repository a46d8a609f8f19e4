//! `pull`: manifest (through an index, choosing the platform), config and layers from a
//! registry into the image store, each verified against its digest before it is visible.
//!
//! Layers are fetched and unpacked in parallel (`RegistryConfig::parallel` at a time). A
//! layer is unpacked **while it downloads** ([`Tee`]): the bytes go to the blob file (its digest
//! checked at the end) and to an unpacking thread at once, into a temp directory that becomes
//! the layer only when the uncompressed content matches the config's diff id. Whatever goes
//! wrong with that stream (a resumed download, an error), the layer is unpacked afterwards
//! from the verified blob, as before. A layer blob the store has is not fetched again; a partial one is resumed with a range
//! request; a document that is both manifest and index, or whose `mediaType` is not the kind
//! it claims, is refused (CVE-2021-41190).

use std::collections::BTreeSet;

use futures::StreamExt;
use oci_client::client::BlobResponse;
use oci_client::manifest::OciDescriptor;
use serde_json::Value;

use super::client::{Connection, connect, error_chain};
use super::error::RegistryError;
use super::platform::{Platform, describe};
use super::{BlobEvent, Progress, RegistryConfig, short};
use crate::engine::image::{
    Digest, Image, ImageError, ImageRecord, ImageStore, Reference, ReferenceError,
};

pub(crate) const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_DOCKER_MANIFEST: &str =
    "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MEDIA_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPT: [&str; 4] = [
    MEDIA_OCI_MANIFEST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_DOCKER_LIST,
];
const LAYER_TYPES: [&str; 8] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];
/// Largest manifest or index accepted (containerd's limit).
const MAX_MANIFEST: usize = 4 << 20;

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub image: Image,
    /// `repository@digest` of what the tag pointed to (the index, for multi-platform images).
    pub repo_digest: String,
    /// Bytes received from the registry (0 when everything was present).
    pub downloaded: u64,
    /// Uncompressed bytes of the layers unpacked by this pull.
    pub unpacked_layers: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Manifest,
    Index,
}

impl ImageStore {
    /// Pulls `reference` with the registry settings of the environment
    /// ([`RegistryConfig::from_env`]). `platform` defaults to the host's.
    pub async fn pull(
        &self,
        reference: &str,
        platform: Option<&Platform>,
        progress: &dyn Progress,
    ) -> Result<PullOutcome, RegistryError> {
        self.pull_with(&RegistryConfig::from_env(), reference, platform, progress)
            .await
    }

    /// Pulls `reference` into the store and returns the image, ready to run.
    pub async fn pull_with(
        &self,
        config: &RegistryConfig,
        reference: &str,
        platform: Option<&Platform>,
        progress: &dyn Progress,
    ) -> Result<PullOutcome, RegistryError> {
        let r = Reference::parse(reference).map_err(|e| bad_reference(reference, e))?;
        let conn = connect(config, r.domain()).await?;
        let wanted = platform.cloned().unwrap_or_else(Platform::host);
        let (top_bytes, top_digest) = fetch_manifest(&conn, &r, r.digest().or(r.tag())).await?;
        if let Some(d) = r.digest()
            && top_digest.to_string() != d
        {
            return Err(RegistryError::ManifestDigest {
                reference: r.to_string(),
                expected: d.to_owned(),
                actual: top_digest.to_string(),
            });
        }
        let (manifest_bytes, manifest_digest) = match kind(&top_bytes, &r)? {
            Kind::Manifest => (top_bytes.clone(), top_digest.clone()),
            Kind::Index => {
                let chosen = choose(&top_bytes, &r, &wanted)?;
                let (bytes, digest) = fetch_manifest(&conn, &r, Some(&chosen.to_string())).await?;
                if digest != chosen {
                    return Err(RegistryError::ManifestDigest {
                        reference: r.to_string(),
                        expected: chosen.to_string(),
                        actual: digest.to_string(),
                    });
                }
                if kind(&bytes, &r)? != Kind::Manifest {
                    return Err(RegistryError::invalid(
                        &r,
                        "index",
                        "it lists another index",
                    ));
                }
                (bytes, digest)
            }
        };
        let manifest: Value = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| RegistryError::invalid(&r, "manifest", e))?;
        let config_desc = descriptor(&manifest["config"], &r, "config")?;
        let layers: Vec<OciDescriptor> = manifest["layers"]
            .as_array()
            .ok_or_else(|| RegistryError::invalid(&r, "manifest", "no layers"))?
            .iter()
            .map(|l| descriptor(l, &r, "layer"))
            .collect::<Result<_, _>>()?;
        for l in &layers {
            if !LAYER_TYPES.contains(&l.media_type.as_str()) {
                return Err(RegistryError::invalid(
                    &r,
                    "manifest",
                    format!("unsupported layer media type {:?}", l.media_type),
                ));
            }
        }

        let oref = oci_ref(&r);
        let mut downloaded =
            fetch_blob(self, &conn, &oref, &config_desc, progress, false, None).await?;
        let config_digest = digest_of(&config_desc, &r)?;
        let config_bytes = self
            .read_blob(&config_digest)
            .map_err(RegistryError::store(&r))?;
        let image_config: Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| RegistryError::invalid(&r, "image config", e))?;
        if platform.is_some() && !wanted.matches(&image_config) {
            return Err(RegistryError::NoPlatform {
                reference: r.to_string(),
                wanted: wanted.to_string(),
                available: describe(&image_config),
            });
        }
        let diff_ids: Vec<Digest> = image_config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().and_then(Digest::parse))
                    .collect()
            })
            .unwrap_or_default();
        if diff_ids.len() != layers.len() {
            return Err(RegistryError::invalid(
                &r,
                "image",
                format!(
                    "{} layers but {} sha256 diff ids in the config",
                    layers.len(),
                    diff_ids.len()
                ),
            ));
        }

        // One task per distinct layer: images often repeat a layer (empty ones), and one
        // process must not wait on its own download lock.
        let mut seen = BTreeSet::new();
        let jobs: Vec<(OciDescriptor, Digest)> = layers
            .iter()
            .zip(&diff_ids)
            .filter(|(l, _)| seen.insert(l.digest.clone()))
            .map(|(l, d)| (l.clone(), d.clone()))
            .collect();
        let results: Vec<Result<(u64, bool), RegistryError>> =
            futures::stream::iter(jobs.into_iter().map(|(desc, diff_id)| {
                let oref = &oref;
                let conn = &conn;
                let r = &r;
                async move {
                    let blob = digest_of(&desc, r)?;
                    let unpacked = self.layer_dir_exists(&diff_id);
                    // Unpack as the bytes arrive when both the layer and its blob are missing.
                    let (tee, streamed) = if !unpacked && !self.has_blob(&blob) {
                        let (tx, rx) = tokio::sync::mpsc::channel(TEE_CHUNKS);
                        let store = self.clone();
                        let d = diff_id.clone();
                        let job = tokio::task::spawn_blocking(move || {
                            store.unpack_from(ChannelReader::new(rx), &d)
                        });
                        (Some(Tee { tx }), Some(job))
                    } else {
                        (None, None)
                    };
                    let n = fetch_blob(self, conn, oref, &desc, progress, true, tee).await;
                    // The streamed unpack's own result does not matter: the directory exists
                    // only if it completed with the right diff id, and the fallback below
                    // reports any real problem.
                    if !unpacked && n.is_ok() {
                        progress.blob(&short(&desc.digest), BlobEvent::Extracting);
                    }
                    if let Some(job) = streamed {
                        let _ = job.await;
                    }
                    let n = n?;
                    if !self.layer_dir_exists(&diff_id) {
                        let store = self.clone();
                        tokio::task::spawn_blocking(move || store.unpack(&blob, &diff_id))
                            .await
                            .map_err(|e| RegistryError::invalid(r, "layer", e))?
                            .map_err(RegistryError::store(r))?;
                    }
                    if !unpacked {
                        progress.blob(&short(&desc.digest), BlobEvent::Extracted);
                    }
                    Ok((n, !unpacked))
                }
            }))
            .buffer_unordered(config.parallel.max(1))
            .collect()
            .await;
        let mut unpacked_layers = 0;
        for res in results {
            let (n, unpacked) = res?;
            downloaded += n;
            unpacked_layers += usize::from(unpacked);
        }

        // Everything the image needs is stored and verified: now make it visible.
        let top = self
            .put_blob(&top_bytes)
            .map_err(RegistryError::store(&r))?;
        debug_assert_eq!(top, top_digest);
        self.put_blob(&manifest_bytes)
            .map_err(RegistryError::store(&r))?;
        let repo_digest = format!("{}@{}", r.repository(), top_digest);
        let name = match r.digest() {
            Some(_) => {
                Reference::parse(&repo_digest).map_err(|e| bad_reference(&repo_digest, e))?
            }
            None => r.clone(),
        };
        let size = config_desc.size.max(0) as u64
            + layers.iter().map(|l| l.size.max(0) as u64).sum::<u64>();
        let record = ImageRecord {
            config: config_digest,
            size,
            created: image_config["created"].as_str().map(str::to_owned),
            repo_digests: vec![repo_digest.clone()],
        };
        self.record(std::slice::from_ref(&name), &manifest_digest, record)
            .map_err(RegistryError::store(&r))?;
        self.mark_pulled(&name).map_err(RegistryError::store(&r))?;
        progress.message(&format!("Digest: {top_digest}"));
        let image = self
            .resolve(&name.to_string())
            .map_err(RegistryError::store(&r))?;
        Ok(PullOutcome {
            image,
            repo_digest,
            downloaded,
            unpacked_layers,
        })
    }
}

fn bad_reference(reference: &str, e: ReferenceError) -> RegistryError {
    RegistryError::Store {
        reference: reference.to_owned(),
        source: ImageError::InvalidReference {
            reference: reference.to_owned(),
            source: e,
        },
    }
}

/// The oci-client reference for our normalised one (tag or digest).
pub(crate) fn oci_ref(r: &Reference) -> oci_client::Reference {
    match r.digest() {
        Some(d) => oci_client::Reference::with_digest(r.domain().into(), r.path().into(), d.into()),
        None => oci_client::Reference::with_tag(
            r.domain().into(),
            r.path().into(),
            r.tag().unwrap_or("latest").into(),
        ),
    }
}

/// Fetches the manifest or index `tag_or_digest` of `r`'s repository and hashes it.
async fn fetch_manifest(
    conn: &Connection,
    r: &Reference,
    tag_or_digest: Option<&str>,
) -> Result<(Vec<u8>, Digest), RegistryError> {
    let at = tag_or_digest.unwrap_or("latest");
    let oref = if at.starts_with("sha256:") {
        oci_client::Reference::with_digest(r.domain().into(), r.path().into(), at.into())
    } else {
        oci_client::Reference::with_tag(r.domain().into(), r.path().into(), at.into())
    };
    let (bytes, _) = conn
        .client
        .pull_manifest_raw(&oref, &conn.auth, &ACCEPT)
        .await
        .map_err(RegistryError::remote(r, "fetching the manifest"))?;
    if bytes.len() > MAX_MANIFEST {
        return Err(RegistryError::invalid(
            r,
            "manifest",
            format!("larger than {MAX_MANIFEST} bytes"),
        ));
    }
    let digest = Digest::of(&bytes);
    Ok((bytes.to_vec(), digest))
}

/// Whether a document is a manifest or an index, refusing ambiguous ones.
fn kind(bytes: &[u8], r: &Reference) -> Result<Kind, RegistryError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| RegistryError::invalid(r, "manifest", e))?;
    if v.get("schemaVersion").and_then(Value::as_i64) != Some(2) {
        return Err(RegistryError::invalid(
            r,
            "manifest",
            "only schema version 2 (Docker v2 schema 2 and OCI) is supported",
        ));
    }
    let is_index = v.get("manifests").is_some();
    let is_manifest = v.get("config").is_some() || v.get("layers").is_some();
    let media = v.get("mediaType").and_then(Value::as_str);
    let kind = match (is_index, is_manifest) {
        (true, false) => Kind::Index,
        (false, true) => Kind::Manifest,
        _ => {
            return Err(RegistryError::invalid(
                r,
                "manifest",
                "it is neither clearly a manifest nor an index",
            ));
        }
    };
    let media_ok = match (media, &kind) {
        (None, _) => true,
        (Some(m), Kind::Index) => m == MEDIA_OCI_INDEX || m == MEDIA_DOCKER_LIST,
        (Some(m), Kind::Manifest) => m == MEDIA_OCI_MANIFEST || m == MEDIA_DOCKER_MANIFEST,
    };
    if !media_ok {
        return Err(RegistryError::invalid(
            r,
            "manifest",
            format!("its mediaType {media:?} does not match its content"),
        ));
    }
    Ok(kind)
}

/// The digest of the index entry for `wanted` (attestation entries skipped).
fn choose(index: &[u8], r: &Reference, wanted: &Platform) -> Result<Digest, RegistryError> {
    let v: Value =
        serde_json::from_slice(index).map_err(|e| RegistryError::invalid(r, "index", e))?;
    let entries = v["manifests"]
        .as_array()
        .ok_or_else(|| RegistryError::invalid(r, "index", "`manifests` is not a list"))?;
    let mut available = Vec::new();
    for e in entries {
        if e["annotations"]["vnd.docker.reference.type"].is_string() {
            continue;
        }
        let platform = &e["platform"];
        if wanted.matches(platform) {
            let d = e["digest"].as_str().unwrap_or_default();
            return Digest::parse(d).ok_or_else(|| {
                RegistryError::invalid(r, "index", format!("digest {d:?} is not sha256"))
            });
        }
        available.push(describe(platform));
    }
    Err(RegistryError::NoPlatform {
        reference: r.to_string(),
        wanted: wanted.to_string(),
        available: if available.is_empty() {
            "no platforms".into()
        } else {
            available.join(", ")
        },
    })
}

fn descriptor(v: &Value, r: &Reference, what: &str) -> Result<OciDescriptor, RegistryError> {
    let d: OciDescriptor = serde_json::from_value(v.clone())
        .map_err(|e| RegistryError::invalid(r, "manifest", format!("{what}: {e}")))?;
    if Digest::parse(&d.digest).is_none() || d.size < 0 {
        return Err(RegistryError::invalid(
            r,
            "manifest",
            format!("{what} {}: not a sha256 digest with a size", d.digest),
        ));
    }
    Ok(d)
}

fn digest_of(d: &OciDescriptor, r: &Reference) -> Result<Digest, RegistryError> {
    Digest::parse(&d.digest)
        .ok_or_else(|| RegistryError::invalid(r, "manifest", "digest is not sha256"))
}

/// Fetches one blob into the store unless it is there, resuming a partial download. Returns
/// the bytes received.
/// Chunks in flight between a download and its unpacking thread.
const TEE_CHUNKS: usize = 64;

/// A message to the unpacking thread: the next bytes, or the end of a verified blob.
enum Chunk {
    Data(bytes::Bytes),
    End,
}

/// The sending side of a streamed unpack. Dropped without [`Tee::end`] (a resumed download,
/// an error) the reader fails, and the unpack with it.
struct Tee {
    tx: tokio::sync::mpsc::Sender<Chunk>,
}

impl Tee {
    /// Passes bytes on; false once the unpacking thread stopped reading (then stop sending).
    async fn send(&self, bytes: bytes::Bytes) -> bool {
        self.tx.send(Chunk::Data(bytes)).await.is_ok()
    }

    async fn end(self) {
        let _ = self.tx.send(Chunk::End).await;
    }
}

/// A blocking reader over a [`Tee`]'s chunks, for the unpacking thread.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    cur: bytes::Bytes,
    ended: bool,
}

impl ChannelReader {
    fn new(rx: tokio::sync::mpsc::Receiver<Chunk>) -> ChannelReader {
        ChannelReader {
            rx,
            cur: bytes::Bytes::new(),
            ended: false,
        }
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(b)) => self.cur = b,
                Some(Chunk::End) => self.ended = true,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the download stopped",
                    ));
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

async fn fetch_blob(
    store: &ImageStore,
    conn: &Connection,
    oref: &oci_client::Reference,
    desc: &OciDescriptor,
    progress: &dyn Progress,
    report: bool,
    mut tee: Option<Tee>,
) -> Result<u64, RegistryError> {
    let id = short(&desc.digest);
    let at = format!("{}/{}", oref.registry(), oref.repository());
    let digest = Digest::parse(&desc.digest)
        .ok_or_else(|| RegistryError::invalid(&at, "manifest", "digest is not sha256"))?;
    let size = desc.size.max(0) as u64;
    if store.has_blob(&digest) {
        if report {
            progress.blob(&id, BlobEvent::Exists);
        }
        return Ok(0);
    }
    let mut dl = store
        .download(&digest, size)
        .map_err(RegistryError::store(&at))?;
    if dl.already_stored() {
        return Ok(0);
    }
    let offset = dl.offset();
    if offset != 0 {
        tee = None; // resumed: the unpack needs the whole blob, from the file afterwards
    }
    let response = conn
        .client
        .pull_blob_stream_partial(oref, desc, offset, None)
        .await
        .map_err(RegistryError::remote(&at, "fetching a blob"))?;
    let mut stream = match response {
        BlobResponse::Partial(s) => s,
        BlobResponse::Full(s) => {
            dl.restart().map_err(RegistryError::store(&at))?;
            s
        }
    };
    // From here on `dl` holds the blob from its first byte, as the tee does.
    let mut received = 0u64;
    let mut last_report = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            // The whole blob arrived but failed a check on the way: let ours name it.
            Err(_) if dl.offset() == size => break,
            Err(e) => {
                return Err(RegistryError::Connect {
                    host: oref.registry().to_owned(),
                    reason: format!(
                        "receiving blob {}: {} (the next pull resumes it)",
                        desc.digest,
                        error_chain(&e)
                    ),
                });
            }
        };
        dl.write(&chunk).map_err(RegistryError::store(&at))?;
        received += chunk.len() as u64;
        if let Some(t) = &tee
            && !t.send(chunk).await
        {
            tee = None;
        }
        if report && (dl.offset() - last_report >= 512 * 1024 || dl.offset() == size) {
            last_report = dl.offset();
            progress.blob(
                &id,
                BlobEvent::Transfer {
                    done: dl.offset(),
                    total: size,
                },
            );
        }
    }
    dl.finish().map_err(RegistryError::store(&at))?;
    if let Some(t) = tee {
        t.end().await;
    }
    if report {
        progress.blob(&id, BlobEvent::Complete);
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_streamed_blob_ends_only_when_the_download_says_so() {
        use std::io::Read;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.try_send(Chunk::Data(bytes::Bytes::from_static(b"hello ")))
            .unwrap();
        tx.try_send(Chunk::Data(bytes::Bytes::from_static(b"world")))
            .unwrap();
        tx.try_send(Chunk::End).unwrap();
        let mut out = String::new();
        ChannelReader::new(rx).read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello world");
        // A download that stops without its end (an error, a resume): the reader fails, so
        // the unpack of a truncated layer can never succeed.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.try_send(Chunk::Data(bytes::Bytes::from_static(b"hel")))
            .unwrap();
        drop(tx);
        let mut out = Vec::new();
        let err = ChannelReader::new(rx).read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    fn r() -> Reference {
        Reference::parse("localhost:5000/x:1").unwrap()
    }

    #[test]
    fn ambiguous_documents_are_refused() {
        let both = json!({"schemaVersion": 2, "manifests": [], "layers": []});
        assert!(kind(both.to_string().as_bytes(), &r()).is_err());
        let lying =
            json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "config": {}, "layers": []});
        assert!(kind(lying.to_string().as_bytes(), &r()).is_err());
        let v1 = json!({"schemaVersion": 1, "fsLayers": []});
        assert!(kind(v1.to_string().as_bytes(), &r()).is_err());
        let ok = json!({"schemaVersion": 2, "mediaType": MEDIA_DOCKER_LIST, "manifests": []});
        assert_eq!(kind(ok.to_string().as_bytes(), &r()).unwrap(), Kind::Index);
    }

    #[test]
    fn chooses_the_platform_and_lists_the_others() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = json!({"schemaVersion": 2, "manifests": [
            {"digest": d('a'), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": d('b'), "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": d('c'), "size": 1, "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        ]})
        .to_string();
        let arm = Platform::parse("linux/arm64").unwrap();
        assert_eq!(
            choose(index.as_bytes(), &r(), &arm).unwrap().to_string(),
            d('b')
        );
        let err = choose(
            index.as_bytes(),
            &r(),
            &Platform::parse("linux/s390x").unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("linux/amd64, linux/arm64/v8"), "{err}");
    }
}
