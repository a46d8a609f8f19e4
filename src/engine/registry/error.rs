//! Errors of registry operations. Each names the image reference or registry host it is about.

use std::path::{Path, PathBuf};

use crate::engine::image::ImageError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference}: {op}: {source}")]
    Remote {
        reference: String,
        op: &'static str,
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    #[error("{host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("{host}: unauthorized: {reason}")]
    Unauthorized { host: String, reason: String },
    #[error("{reference}: no image for platform {wanted} (the index has {available})")]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("{reference}: invalid {what}: {reason}")]
    Invalid {
        reference: String,
        what: &'static str,
        reason: String,
    },
    #[error("{reference}: manifest has digest {actual}, expected {expected}")]
    ManifestDigest {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: {source}")]
    Store {
        reference: String,
        #[source]
        source: ImageError,
    },
    #[error("{path}: {reason}")]
    Credentials { path: PathBuf, reason: String },
    #[error("credential helper {helper}: {reason}")]
    Helper { helper: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> RegistryError {
        RegistryError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn remote(
        reference: impl ToString,
        op: &'static str,
    ) -> impl FnOnce(oci_client::errors::OciDistributionError) -> RegistryError {
        let reference = reference.to_string();
        move |source| RegistryError::Remote {
            reference,
            op,
            source: Box::new(source),
        }
    }

    pub(crate) fn store(reference: impl ToString) -> impl FnOnce(ImageError) -> RegistryError {
        let reference = reference.to_string();
        move |source| RegistryError::Store { reference, source }
    }

    pub(crate) fn invalid(
        reference: impl ToString,
        what: &'static str,
        reason: impl ToString,
    ) -> RegistryError {
        RegistryError::Invalid {
            reference: reference.to_string(),
            what,
            reason: reason.to_string(),
        }
    }

    /// A hint for the CLI, where there is a likely fix.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Unauthorized { host, .. } => Some(format!(
                "log in with `berth login {host}`, or check the repository name"
            )),
            RegistryError::Remote { source, .. }
                if matches!(
                    **source,
                    oci_client::errors::OciDistributionError::AuthenticationFailure(_)
                        | oci_client::errors::OciDistributionError::UnauthorizedError { .. }
                ) =>
            {
                Some("log in with `berth login HOST`, or check the repository name".into())
            }
            RegistryError::Connect { host, reason } if reason.contains("certificate") => Some(
                format!("put the registry's CA certificate in /etc/berth/certs.d/{host}/ca.crt"),
            ),
            RegistryError::NoPlatform { .. } => {
                Some("choose one of the listed platforms with --platform".into())
            }
            _ => None,
        }
    }
}
