//! Errors of the image store. Every variant names its subject: a reference, a path, a digest.

use std::io;
use std::path::PathBuf;

use super::reference::ReferenceError;
use super::unpack::UnpackError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no such image: {reference}")]
    NotFound { reference: String },
    #[error("invalid reference {reference:?}: {source}")]
    InvalidReference {
        reference: String,
        #[source]
        source: ReferenceError,
    },
    #[error("image id prefix {prefix:?} is ambiguous: it matches {count} images")]
    Ambiguous { prefix: String, count: usize },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: content has digest {actual}, expected {expected}")]
    DigestMismatch {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: size is {actual} bytes, the descriptor says {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("{path}: invalid {what}: {reason}")]
    InvalidDocument {
        path: String,
        what: &'static str,
        reason: String,
    },
    #[error("{path}: blob {digest} is missing from the archive")]
    MissingBlob { path: String, digest: String },
    #[error("{source_name}: not an image archive (no manifest.json or index.json found)")]
    NotAnArchive { source_name: String },
    #[error("{source_name}: {reason}")]
    Unsupported { source_name: String, reason: String },
    #[error("unpacking layer {diff_id}: {source}")]
    Unpack {
        diff_id: String,
        #[source]
        source: UnpackError,
    },
    #[error("cannot remove {reference}: {reason}")]
    Conflict { reference: String, reason: String },
    #[error("layer {diff_id}: unpacked content has diff id {actual}")]
    DiffIdMismatch { diff_id: String, actual: String },
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { path, source }
    }

    pub(crate) fn invalid(
        path: impl Into<String>,
        what: &'static str,
        reason: impl ToString,
    ) -> ImageError {
        ImageError::InvalidDocument {
            path: path.into(),
            what,
            reason: reason.to_string(),
        }
    }
}
