//! Talking to OCI registries: pull into the image store, push out of it, login and logout.
//!
//! The protocol (auth challenges, bearer tokens, chunked uploads) is `oci-client`'s; what is
//! ours is everything that decides trust: which manifest of an index is used, that every byte
//! is hashed on its way into the store and nothing unverified becomes visible, which host may
//! be spoken to in plain HTTP, which CA a host is checked against, and where credentials live.
//!
//! Design decision: the store, not the network, is the source of truth. A pull first asks the
//! store what it already has (blobs by digest, layers by diff id) and downloads only the rest;
//! partial downloads live in the store (`downloads/`) and are resumed with range requests, so
//! an interrupted pull costs only what was not yet received.

mod client;
pub mod credentials;
mod error;
mod platform;
mod pull;
mod push;

use std::path::PathBuf;

pub use client::login;
pub use credentials::{CredentialStore, Credentials};
pub use error::RegistryError;
pub use platform::Platform;
pub use pull::PullOutcome;
pub use push::{IndexEntry, PushOutcome};

/// How to reach registries: trust, plain-HTTP exceptions and the credentials file. Built once
/// by the caller; tests point every path at temp dirs.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Directories with a subdirectory per registry host (`host:port`) holding extra CA
    /// certificates (`*.crt`, PEM), as Docker's `/etc/docker/certs.d`.
    pub certs_dirs: Vec<PathBuf>,
    /// Registries that may be spoken to in plain HTTP besides localhost and 127.0.0.0/8.
    pub insecure: Vec<String>,
    /// Docker's credentials file (`$DOCKER_CONFIG/config.json`, `~/.docker/config.json`).
    pub credentials: CredentialStore,
    /// Layers downloaded at the same time.
    pub parallel: usize,
}

impl RegistryConfig {
    /// From the environment: `DOCKER_CONFIG` or `HOME` for credentials, `BERTH_CERTS_D`
    /// (colon separated; default `/etc/berth/certs.d:/etc/docker/certs.d`) and
    /// `BERTH_INSECURE_REGISTRIES` (comma separated hosts).
    pub fn from_env() -> RegistryConfig {
        let certs_dirs = match std::env::var_os("BERTH_CERTS_D") {
            Some(v) => std::env::split_paths(&v).collect(),
            None => vec!["/etc/berth/certs.d".into(), "/etc/docker/certs.d".into()],
        };
        let insecure = std::env::var("BERTH_INSECURE_REGISTRIES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        RegistryConfig {
            certs_dirs,
            insecure,
            credentials: CredentialStore::from_env(),
            parallel: 4,
        }
    }
}

/// What a pull or push reports while it runs, per blob (identified by a short digest).
pub trait Progress: Send + Sync {
    fn blob(&self, id: &str, event: BlobEvent);
    /// A line for the user (`Digest: …`, `Status: …`).
    fn message(&self, line: &str);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobEvent {
    /// Present locally (pull) or in the registry (push): nothing to transfer.
    Exists,
    /// Transferring: bytes done out of total.
    Transfer { done: u64, total: u64 },
    /// Mounted from another repository of the same registry (push).
    Mounted,
    /// Received and verified (pull), or sent (push).
    Complete,
    /// Unpacking into a layer directory (pull).
    Extracting,
    /// Unpacked (pull).
    Extracted,
}

/// A progress sink that reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn blob(&self, _: &str, _: BlobEvent) {}
    fn message(&self, _: &str) {}
}

/// The first 12 hex digits of a digest, as docker names layers in progress output.
pub(crate) fn short(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// Hosts that may use plain HTTP without being configured: loopback only.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.0.1",
            "[::1]:80",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "ghcr.io",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
