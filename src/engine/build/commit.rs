//! `commit` (a container's changes as one more layer on its image) and `import` (a rootfs
//! tarball as a one-layer image), with their `--change` Dockerfile instructions.
//!
//! The one decision to know: `--change` lines are not interpreted here. They are built as a
//! Dockerfile `FROM <new image>` + the lines, by the builder itself, so they mean exactly what
//! the same instructions mean in a Dockerfile; the intermediate image is then forgotten.

use std::io::Read;
use std::path::Path;

use super::config::{History, ImageConfig};
use super::{BuildError, BuildOptions, Quiet};
use crate::engine::image::ImageStore;
use crate::engine::image::write::StoredLayer;
use crate::state::Paths;

/// Instructions `--change` accepts, as docker.
const CHANGE_KEYWORDS: [&str; 11] = [
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "HEALTHCHECK",
    "LABEL",
    "ONBUILD",
    "USER",
    "VOLUME",
    "WORKDIR",
    "STOPSIGNAL",
];

/// What `commit` and `import` share.
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    /// Names for the result.
    pub tags: Vec<String>,
    /// `--change` Dockerfile instructions.
    pub changes: Vec<String>,
    /// `-m`: the history comment.
    pub message: Option<String>,
    /// `-a`: the author.
    pub author: Option<String>,
}

/// Commits the overlay upper directory `upper` of a container running `image_id` as a new
/// image. Returns the new image id.
pub fn commit(
    paths: &Paths,
    upper: &Path,
    image_id: &str,
    opts: &NewImage,
) -> Result<String, BuildError> {
    let store = ImageStore::open(&paths.images())?;
    let parent = store.resolve(image_id)?;
    let mut layers = store.image_layers(&parent)?;
    let mut config: ImageConfig = serde_json::from_slice(&store.blob_bytes(&parent.id)?)
        .map_err(|e| BuildError::Other(format!("image config of {image_id}: {e}")))?;
    let tmp = tmp_file(paths, "commit")?;
    let changed =
        super::layer::write_layer(upper, &tmp.0, true).map_err(|source| BuildError::Io {
            path: upper.to_owned(),
            source,
        })?;
    if changed {
        layers.push(store.add_layer(&tmp.0)?);
    }
    let now = crate::engine::logs::now();
    config.history.push(History {
        created: Some(now.clone()),
        created_by: Some("berth commit".into()),
        comment: opts.message.clone(),
        empty_layer: !changed,
    });
    if opts.author.is_some() {
        config.author = opts.author.clone();
    }
    finish(paths, &store, config, &layers, opts)
}

/// Imports a rootfs tarball (plain, gzip or zstd) as a one-layer image. Returns its id.
pub fn import(
    paths: &Paths,
    tarball: impl Read,
    source_name: &str,
    opts: &NewImage,
) -> Result<String, BuildError> {
    let store = ImageStore::open(&paths.images())?;
    let tmp = tmp_file(paths, "import")?;
    let mut reader = crate::engine::image::unpack::decompress(std::io::BufReader::new(tarball))
        .map_err(|e| BuildError::Other(format!("{source_name}: {e}")))?;
    let mut f = std::fs::File::create(&tmp.0).map_err(|source| BuildError::Io {
        path: tmp.0.clone(),
        source,
    })?;
    std::io::copy(&mut reader, &mut f)
        .map_err(|e| BuildError::Other(format!("{source_name}: {e}")))?;
    drop(f);
    check_tar(&tmp.0, source_name)?;
    let layer = store.add_layer(&tmp.0)?;
    let now = crate::engine::logs::now();
    let config = ImageConfig {
        architecture: crate::engine::image::host_arch().into(),
        os: "linux".into(),
        author: opts.author.clone(),
        history: vec![History {
            created: Some(now),
            created_by: Some(format!("berth import {source_name}")),
            comment: Some(opts.message.clone().unwrap_or_else(|| "Imported".into())),
            empty_layer: false,
        }],
        ..Default::default()
    };
    finish(paths, &store, config, &[layer], opts)
}

/// The whole file must read as a tar archive; a rootfs that is not one is refused.
fn check_tar(path: &Path, source_name: &str) -> Result<(), BuildError> {
    let f = std::fs::File::open(path).map_err(|source| BuildError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut ar = tar::Archive::new(f);
    let entries = ar
        .entries()
        .map_err(|e| BuildError::Other(format!("{source_name}: not a tar archive: {e}")))?;
    let mut n = 0;
    for e in entries {
        e.map_err(|e| BuildError::Other(format!("{source_name}: not a tar archive: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(BuildError::Other(format!(
            "{source_name}: not a tar archive (no entries)"
        )));
    }
    Ok(())
}

/// Writes the image; with `--change`s, builds them on top and forgets the intermediate image.
fn finish(
    paths: &Paths,
    store: &ImageStore,
    mut config: ImageConfig,
    layers: &[StoredLayer],
    opts: &NewImage,
) -> Result<String, BuildError> {
    config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
    config.created = config.history.last().and_then(|h| h.created.clone());
    let bytes = serde_json::to_vec(&config).map_err(|e| BuildError::Other(e.to_string()))?;
    if opts.changes.is_empty() {
        return Ok(store.write_image(&bytes, layers, config.created.clone(), &opts.tags)?);
    }
    let mut text = String::new();
    for c in &opts.changes {
        let kw = c
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if !CHANGE_KEYWORDS.contains(&kw.as_str()) {
            return Err(BuildError::Other(format!(
                "--change {c:?}: {kw} is not allowed (only {})",
                CHANGE_KEYWORDS.join(", ")
            )));
        }
        text.push_str(c);
        text.push('\n');
    }
    let base = store.write_image(&bytes, layers, config.created.clone(), &[])?;
    let context = tmp_dir(paths, "changes")?;
    let built = super::build(
        paths,
        &BuildOptions {
            context: context.0.clone(),
            dockerfile_inline: Some(format!("FROM {base}\n{text}")),
            tags: opts.tags.clone(),
            no_cache: true,
            ..Default::default()
        },
        &Quiet,
    );
    // The intermediate image has no name; its blobs are shared or go with the next gc.
    let _ = store.remove(&base, true, &paths.containers());
    Ok(built?.image_id)
}

/// A temp path under the state root, removed on drop.
struct TmpPath(std::path::PathBuf);

impl Drop for TmpPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp_file(paths: &Paths, what: &str) -> Result<TmpPath, BuildError> {
    let dir = paths.data.join("build-tmp");
    std::fs::create_dir_all(&dir).map_err(|source| BuildError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(TmpPath(
        dir.join(format!("{what}-{}", crate::state::new_id())),
    ))
}

fn tmp_dir(paths: &Paths, what: &str) -> Result<TmpPath, BuildError> {
    let t = tmp_file(paths, what)?;
    std::fs::create_dir_all(&t.0).map_err(|source| BuildError::Io {
        path: t.0.clone(),
        source,
    })?;
    Ok(t)
}
