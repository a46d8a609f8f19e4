//! `docker load`: reads a `docker save` archive or an OCI image layout (tar or directory),
//! verifies every blob it uses, and describes the images found. Nothing reaches the store here:
//! the caller commits the staged blobs and the names only when the whole archive checked out.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use super::blobs::{MAX_JSON, Staged, Staging, read_bounded};
use super::digest::Digest;
use super::error::ImageError;
use super::reference::Reference;
use super::unpack::decompress;

pub(crate) const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// buildx attestation manifests carry this annotation; they are not runnable images.
const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// One image found in an archive, with its blobs staged and verified.
pub(crate) struct Loaded {
    pub names: Vec<Reference>,
    pub manifest: Staged,
    pub config: Staged,
    pub layers: Vec<Staged>,
    pub created: Option<String>,
}

/// Where the archive's files come from.
pub(crate) enum Source {
    /// A tar stream already copied into staging, by normalised path inside the archive.
    Tar(HashMap<String, Staged>),
    /// An unpacked layout directory; files are staged (copied and hashed) on demand.
    Dir(PathBuf),
}

impl Source {
    /// Stages every regular file of the tar stream `r` (gzip or zstd compressed or not).
    pub(crate) fn from_tar(
        r: impl Read,
        staging: &mut Staging,
        name: &str,
    ) -> Result<Source, ImageError> {
        let read_err = |source| ImageError::Io {
            path: PathBuf::from(name),
            source,
        };
        let r = decompress(BufReader::with_capacity(256 * 1024, r)).map_err(read_err)?;
        let mut archive = tar::Archive::new(r);
        let mut files: HashMap<String, Staged> = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        for entry in archive.entries().map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let Some(path) = archive_path(&entry.path_bytes(), "") else {
                continue;
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let staged = staging.stage(entry, &format!("{name}:{path}"))?;
                    if let Some(want) = blob_path_digest(&path)
                        && want != staged.digest
                    {
                        return Err(ImageError::DigestMismatch {
                            path: format!("{name}:{path}"),
                            expected: want.to_string(),
                            actual: staged.digest.to_string(),
                        });
                    }
                    files.insert(path, staged);
                }
                kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                    let base = match kind {
                        // Symlink targets are relative to the link's directory.
                        tar::EntryType::Symlink => path.rsplit_once('/').map_or("", |(d, _)| d),
                        _ => "",
                    };
                    let target = entry.link_name_bytes().unwrap_or_default();
                    if let Some(target) = archive_path(&target, base) {
                        links.push((path, target));
                    }
                }
                _ => {}
            }
        }
        // docker save links duplicate layers to their first copy; follow a few levels.
        for _ in 0..8 {
            for (link, target) in &links {
                if let Some(staged) = files.get(target).cloned() {
                    files.entry(link.clone()).or_insert(staged);
                }
            }
        }
        Ok(Source::Tar(files))
    }

    /// A file of the archive, staged; `None` when absent.
    fn file(&mut self, path: &str, staging: &mut Staging) -> Result<Option<Staged>, ImageError> {
        match self {
            Source::Tar(files) => Ok(files.get(path).cloned()),
            Source::Dir(dir) => {
                let Some(rel) = archive_path(path.as_bytes(), "") else {
                    return Ok(None);
                };
                let full = dir.join(rel);
                match File::open(&full) {
                    Ok(f) => Ok(Some(staging.stage(f, &full.display().to_string())?)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(ImageError::Io {
                        path: full,
                        source: e,
                    }),
                }
            }
        }
    }

    /// A small JSON file of the archive.
    fn json(&mut self, path: &str) -> Result<Option<Vec<u8>>, ImageError> {
        let file = match self {
            Source::Tar(files) => match files.get(path) {
                Some(s) => s.file.clone(),
                None => return Ok(None),
            },
            Source::Dir(dir) => dir.join(path),
        };
        if !file.is_file() {
            return Ok(None);
        }
        read_bounded(&file).map(Some)
    }

    /// The blob `digest` of an OCI layout, verified against its digest and the descriptor size.
    fn oci_blob(
        &mut self,
        desc: &Descriptor,
        staging: &mut Staging,
    ) -> Result<Option<Staged>, ImageError> {
        let digest = descriptor_digest(desc)?;
        let path = format!("blobs/sha256/{}", digest.hex());
        let Some(staged) = self.file(&path, staging)? else {
            return Ok(None);
        };
        check_staged(&staged, &path, &digest, Some(desc.size()))?;
        Ok(Some(staged))
    }
}

/// Reads the archive's images: `manifest.json` (docker save) wins over `index.json` (OCI), as
/// in `docker load`.
pub(crate) fn read_images(
    src: &mut Source,
    staging: &mut Staging,
    name: &str,
) -> Result<Vec<Loaded>, ImageError> {
    if let Some(bytes) = src.json("manifest.json")? {
        return read_docker(src, staging, name, &bytes);
    }
    if let Some(bytes) = src.json("index.json")? {
        return read_oci(src, staging, name, &bytes);
    }
    Err(ImageError::NotAnArchive {
        source_name: name.to_owned(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn read_docker(
    src: &mut Source,
    staging: &mut Staging,
    name: &str,
    bytes: &[u8],
) -> Result<Vec<Loaded>, ImageError> {
    let at = format!("{name}:manifest.json");
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(bytes).map_err(|e| ImageError::invalid(&at, "manifest.json", e))?;
    let mut out = Vec::new();
    for entry in entries {
        let missing = |path: &str| ImageError::MissingBlob {
            path: format!("{name}:{path}"),
            digest: path.to_owned(),
        };
        let config = src
            .file(&entry.config, staging)?
            .ok_or_else(|| missing(&entry.config))?;
        let parsed = parse_config(&config, &format!("{name}:{}", entry.config))?;
        let mut layers = Vec::new();
        let mut layer_descs = Vec::new();
        for path in &entry.layers {
            let staged = src.file(path, staging)?.ok_or_else(|| missing(path))?;
            layer_descs.push(serde_json::json!({
                "mediaType": layer_media_type(&staged)?,
                "digest": staged.digest.to_string(),
                "size": staged.size,
            }));
            layers.push(staged);
        }
        check_diff_ids(&parsed, layers.len(), &format!("{name}:{}", entry.config))?;
        // The image is stored as the OCI manifest docker would push for it.
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {
                "mediaType": MEDIA_OCI_CONFIG,
                "digest": config.digest.to_string(),
                "size": config.size,
            },
            "layers": layer_descs,
        });
        let manifest_bytes = serde_json::to_vec(&manifest).expect("a json value serialises");
        let manifest = staging.stage(&manifest_bytes[..], &at)?;
        let mut names = Vec::new();
        for tag in entry.repo_tags.unwrap_or_default() {
            names.push(
                Reference::parse(&tag).map_err(|source| ImageError::InvalidReference {
                    reference: tag.clone(),
                    source,
                })?,
            );
        }
        out.push(Loaded {
            names,
            manifest,
            created: parsed.created().clone(),
            config,
            layers,
        });
    }
    Ok(out)
}

fn read_oci(
    src: &mut Source,
    staging: &mut Staging,
    name: &str,
    bytes: &[u8],
) -> Result<Vec<Loaded>, ImageError> {
    let at = format!("{name}:index.json");
    let index = parse_index(bytes, &at)?;
    let mut out = Vec::new();
    // With the host's platform among several, the others are not loaded.
    let host_listed = index.manifests().iter().any(platform_matches);
    for desc in index.manifests() {
        let annotations = desc.annotations().clone().unwrap_or_default();
        if annotations.contains_key(ANNOTATION_REFERENCE_TYPE) {
            continue;
        }
        let names = image_name(&annotations)?.into_iter().collect();
        let media = desc.media_type().to_string();
        let manifest_desc = if media == MEDIA_OCI_INDEX || media == MEDIA_DOCKER_LIST {
            let blob = src
                .oci_blob(desc, staging)?
                .ok_or_else(|| missing_blob(name, desc))?;
            let nested = parse_index(
                &read_bounded(&blob.file)?,
                &format!("{name}:{}", desc.digest()),
            )?;
            pick_platform(src, staging, nested.manifests(), name)?.clone()
        } else if media == MEDIA_OCI_MANIFEST || media == MEDIA_DOCKER_MANIFEST {
            // An index may also list other platforms' manifests, often without their blobs.
            if !platform_matches(desc) && (host_listed || src.oci_blob(desc, staging)?.is_none()) {
                continue;
            }
            desc.clone()
        } else {
            continue;
        };
        let mut loaded = read_oci_manifest(src, staging, name, &manifest_desc)?;
        loaded.names = names;
        out.push(loaded);
    }
    Ok(out)
}

fn read_oci_manifest(
    src: &mut Source,
    staging: &mut Staging,
    name: &str,
    desc: &Descriptor,
) -> Result<Loaded, ImageError> {
    let manifest = src
        .oci_blob(desc, staging)?
        .ok_or_else(|| missing_blob(name, desc))?;
    let at = format!("{name}:{}", desc.digest());
    let value: serde_json::Value = serde_json::from_slice(&read_bounded(&manifest.file)?)
        .map_err(|e| ImageError::invalid(&at, "manifest", e))?;
    // CVE-2021-41190: a document must not be both a manifest and an index.
    if value.get("manifests").is_some() {
        return Err(ImageError::invalid(
            &at,
            "manifest",
            "it also has a `manifests` field",
        ));
    }
    let parsed: ImageManifest =
        serde_json::from_value(value).map_err(|e| ImageError::invalid(&at, "manifest", e))?;
    let config = src
        .oci_blob(parsed.config(), staging)?
        .ok_or_else(|| missing_blob(name, parsed.config()))?;
    let config_parsed = parse_config(&config, &format!("{name}:{}", parsed.config().digest()))?;
    let mut layers = Vec::new();
    for layer in parsed.layers() {
        let staged = src
            .oci_blob(layer, staging)?
            .ok_or_else(|| missing_blob(name, layer))?;
        layers.push(staged);
    }
    check_diff_ids(&config_parsed, layers.len(), &at)?;
    Ok(Loaded {
        names: Vec::new(),
        manifest,
        created: config_parsed.created().clone(),
        config,
        layers,
    })
}

fn parse_index(bytes: &[u8], at: &str) -> Result<ImageIndex, ImageError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ImageError::invalid(at, "index", e))?;
    if value.get("layers").is_some() || value.get("config").is_some() {
        return Err(ImageError::invalid(
            at,
            "index",
            "it also has manifest fields",
        ));
    }
    serde_json::from_value(value).map_err(|e| ImageError::invalid(at, "index", e))
}

fn parse_config(staged: &Staged, at: &str) -> Result<ImageConfiguration, ImageError> {
    if staged.size > MAX_JSON {
        return Err(ImageError::invalid(at, "image config", "too large"));
    }
    serde_json::from_slice(&read_bounded(&staged.file)?)
        .map_err(|e| ImageError::invalid(at, "image config", e))
}

fn check_diff_ids(config: &ImageConfiguration, layers: usize, at: &str) -> Result<(), ImageError> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != layers {
        return Err(ImageError::invalid(
            at,
            "image",
            format!(
                "{layers} layers but {} diff ids in the config",
                diff_ids.len()
            ),
        ));
    }
    for d in diff_ids {
        if Digest::parse(d).is_none() {
            return Err(ImageError::Unsupported {
                source_name: at.to_owned(),
                reason: format!("diff id {d:?} is not a sha256 digest"),
            });
        }
    }
    Ok(())
}

/// The name `docker load` gives an OCI index entry: `io.containerd.image.name`, else
/// `org.opencontainers.image.ref.name` when that is a full reference, not a bare tag.
fn image_name(annotations: &HashMap<String, String>) -> Result<Option<Reference>, ImageError> {
    if let Some(name) = annotations.get(ANNOTATION_CONTAINERD_NAME) {
        return Reference::parse(name)
            .map(Some)
            .map_err(|source| ImageError::InvalidReference {
                reference: name.clone(),
                source,
            });
    }
    Ok(annotations
        .get(ANNOTATION_REF_NAME)
        .filter(|n| n.contains('/') || n.contains(':') || n.contains('@'))
        .and_then(|n| Reference::parse(n).ok()))
}

fn pick_platform<'a>(
    src: &mut Source,
    staging: &mut Staging,
    manifests: &'a [Descriptor],
    name: &str,
) -> Result<&'a Descriptor, ImageError> {
    for desc in manifests {
        if platform_matches(desc) && src.oci_blob(desc, staging)?.is_some() {
            return Ok(desc);
        }
    }
    Err(ImageError::Unsupported {
        source_name: name.to_owned(),
        reason: format!("no image for linux/{} in the archive", host_arch()),
    })
}

/// True when the descriptor has no platform or the host's.
fn platform_matches(desc: &Descriptor) -> bool {
    desc.platform().as_ref().is_none_or(|p| {
        p.os().to_string() == "linux" && p.architecture().to_string() == host_arch()
    })
}

/// The host architecture in OCI (Go) naming.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn descriptor_digest(desc: &Descriptor) -> Result<Digest, ImageError> {
    Digest::from_oci(desc.digest()).ok_or_else(|| ImageError::Unsupported {
        source_name: desc.digest().to_string(),
        reason: "only sha256 digests are supported".into(),
    })
}

fn missing_blob(name: &str, desc: &Descriptor) -> ImageError {
    ImageError::MissingBlob {
        path: name.to_owned(),
        digest: desc.digest().to_string(),
    }
}

fn check_staged(
    staged: &Staged,
    path: &str,
    digest: &Digest,
    size: Option<u64>,
) -> Result<(), ImageError> {
    if &staged.digest != digest {
        return Err(ImageError::DigestMismatch {
            path: path.to_owned(),
            expected: digest.to_string(),
            actual: staged.digest.to_string(),
        });
    }
    if let Some(size) = size
        && size != staged.size
    {
        return Err(ImageError::SizeMismatch {
            path: path.to_owned(),
            expected: size,
            actual: staged.size,
        });
    }
    Ok(())
}

/// The media type of a layer blob, from its first bytes.
fn layer_media_type(staged: &Staged) -> Result<&'static str, ImageError> {
    let mut head = [0u8; 4];
    let mut f = File::open(&staged.file).map_err(ImageError::io(&staged.file))?;
    let n = f.read(&mut head).map_err(ImageError::io(&staged.file))?;
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => MEDIA_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => MEDIA_LAYER_ZSTD,
        _ => MEDIA_LAYER_TAR,
    })
}

/// `blobs/sha256/<hex>` → the digest it promises.
fn blob_path_digest(path: &str) -> Option<Digest> {
    Digest::from_hex(path.strip_prefix("blobs/sha256/")?)
}

/// Normalises a path inside an archive (relative to `base`): no leading `/` or `./`, `..`
/// applied; `None` when it climbs out or names the root.
fn archive_path(raw: &[u8], base: &str) -> Option<String> {
    let raw = std::str::from_utf8(raw).ok()?;
    let mut out: Vec<&str> = Vec::new();
    let joined = if raw.starts_with('/') {
        raw.to_owned()
    } else {
        format!("{base}/{raw}")
    };
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    (!out.is_empty()).then(|| out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths() {
        assert_eq!(
            archive_path(b"./manifest.json", "").as_deref(),
            Some("manifest.json")
        );
        assert_eq!(
            archive_path(b"../a/layer.tar", "b").as_deref(),
            Some("a/layer.tar")
        );
        assert_eq!(archive_path(b"/x", "b").as_deref(), Some("x"));
        assert_eq!(archive_path(b"../../x", "b"), None);
        assert_eq!(archive_path(b".", ""), None);
    }

    #[test]
    fn names_from_annotations() {
        let ann = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let name = |pairs| image_name(&ann(pairs)).unwrap().map(|r| r.to_string());
        assert_eq!(name(&[(ANNOTATION_REF_NAME, "latest")]), None);
        assert_eq!(
            name(&[(ANNOTATION_REF_NAME, "bars/busybox:latest")]).as_deref(),
            Some("docker.io/bars/busybox:latest")
        );
        assert_eq!(
            name(&[
                (ANNOTATION_REF_NAME, "latest"),
                (ANNOTATION_CONTAINERD_NAME, "docker.io/library/busybox:1")
            ])
            .as_deref(),
            Some("docker.io/library/busybox:1")
        );
    }
}
