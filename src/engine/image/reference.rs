//! Docker image references: parsing, validation, normalisation and the short display form.
//!
//! Follows the grammar of `distribution/reference`: `busybox` is `docker.io/library/busybox:latest`,
//! the first path component is a registry only when it contains `.` or `:` or is `localhost`.

use std::fmt;

/// Registry that names without a domain belong to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A parsed, normalised image reference: `domain/path[:tag][@digest]`, where a reference given
/// without tag and digest gets the tag `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a string is not a valid image reference. The messages follow docker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference is empty")]
    Empty,
    #[error("repository name must be lowercase")]
    Uppercase,
    #[error("repository name must not be a 64-byte hexadecimal string (that is an image id)")]
    LooksLikeId,
    #[error("invalid reference format: {0:?} is not a valid registry host")]
    Domain(String),
    #[error("invalid reference format: {0:?} is not a valid repository path component")]
    Component(String),
    #[error("invalid reference format: {0:?} is not a valid tag")]
    Tag(String),
    #[error("invalid reference format: {0:?} is not a valid digest (expected sha256:<64 hex>)")]
    Digest(String),
    #[error("repository name must not be longer than {NAME_MAX} characters")]
    TooLong,
}

impl Reference {
    /// Parses and normalises a reference as `docker` does (`ParseNormalizedNamed` plus the
    /// default tag).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ReferenceError::LooksLikeId);
        }
        let (name, digest) = match s.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (s, None),
        };
        let (name, tag) = match name.rfind(':') {
            Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
            _ => (name, None),
        };
        let (domain, path) = split_domain(name);
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase);
        }
        if !valid_domain(&domain) {
            return Err(ReferenceError::Domain(domain));
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::Component(component.to_owned()));
            }
        }
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(ReferenceError::TooLong);
        }
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::Tag(tag.to_owned()));
        }
        if let Some(digest) = digest
            && !valid_digest(digest)
        {
            return Err(ReferenceError::Digest(digest.to_owned()));
        }
        let tag = match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest: digest.map(str::to_owned),
        })
    }

    /// The registry host, e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The full repository name, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as docker displays it: `busybox`, `bars/x`, `localhost:5000/a/b`.
    pub fn short_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_owned(),
            // `docker.io/cker.io/x` must keep its domain: `cker.io/x` would name another registry.
            _ if self
                .path
                .split_once('/')
                .is_some_and(|(first, _)| looks_like_domain(first)) =>
            {
                self.repository()
            }
            _ => self.path.clone(),
        }
    }

    /// The short form with tag and digest, e.g. `busybox:latest`, as `docker load` prints it.
    pub fn short(&self) -> String {
        let mut s = self.short_name();
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest);
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Whether the first component of a name is a registry domain rather than part of the path.
fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// Splits `name` into registry domain and repository path (docker's `splitDockerDomain`).
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (first.to_owned(), rest.to_owned()),
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_owned();
    }
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        path = format!("{OFFICIAL_REPO_PREFIX}{path}");
    }
    (domain, path)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &b[start..i];
        let ok = sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host(:port)?` where host is dot-separated DNS labels or a bracketed IPv6 address.
fn valid_domain(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("[v6]", Some(port)),
                None => return false,
            },
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host == "[v6]" {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= TAG_MAX
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// Only sha256 digests are supported: `sha256:` and 64 lowercase hex digits.
fn valid_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let table: &[(&str, &str, &str)] = &[
            // input, normalised, short name
            ("busybox", "docker.io/library/busybox:latest", "busybox"),
            ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox"),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox",
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox",
            ),
            ("bars/x:1", "docker.io/bars/x:1", "bars/x"),
            (
                "docker.io/library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b",
            ),
            ("localhost/x", "localhost/x:latest", "localhost/x"),
            (
                "localhost:5000/a/b",
                "localhost:5000/a/b:latest",
                "localhost:5000/a/b",
            ),
            (
                &format!("localhost:5000/a/b@{D}"),
                &format!("localhost:5000/a/b@{D}"),
                "localhost:5000/a/b",
            ),
            (
                &format!("a:t@{D}"),
                &format!("docker.io/library/a:t@{D}"),
                "a",
            ),
            (
                "ghcr.io/o/r:v1.2-rc_3",
                "ghcr.io/o/r:v1.2-rc_3",
                "ghcr.io/o/r",
            ),
            (
                "127.0.0.1:5000/x",
                "127.0.0.1:5000/x:latest",
                "127.0.0.1:5000/x",
            ),
            ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x"),
            ("a__b/c--d.e", "docker.io/a__b/c--d.e:latest", "a__b/c--d.e"),
            (
                "Registry.Example/x",
                "Registry.Example/x:latest",
                "Registry.Example/x",
            ),
        ];
        for (input, want, short) in table {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want, "{input}");
            assert_eq!(r.short_name(), *short, "{input}");
        }
    }

    #[test]
    fn short_form_keeps_tag() {
        assert_eq!(
            Reference::parse("busybox").unwrap().short(),
            "busybox:latest"
        );
        assert_eq!(Reference::parse("bars/x:1").unwrap().short(), "bars/x:1");
    }

    /// Found by the `image_reference` fuzz target: a Docker Hub path whose first component
    /// looks like a domain keeps `docker.io/` in its short form, or it would parse back as
    /// another registry.
    #[test]
    fn short_form_of_a_hub_path_that_looks_like_a_domain_keeps_the_domain() {
        for name in [
            "docker.io/cker.io/uu",
            "docker.io/localhost/x",
            "docker.io/a:1/b",
        ] {
            let Ok(r) = Reference::parse(name) else {
                continue;
            };
            assert_eq!(Reference::parse(&r.short()).unwrap(), r, "{name}");
        }
        assert_eq!(
            Reference::parse("docker.io/cker.io/uu").unwrap().short(),
            "docker.io/cker.io/uu:latest"
        );
    }

    #[test]
    fn rejects_invalid() {
        let table: &[(&str, ReferenceError)] = &[
            ("", ReferenceError::Empty),
            ("Busybox", ReferenceError::Uppercase),
            ("bars/X", ReferenceError::Uppercase),
            ("a:", ReferenceError::Tag(String::new())),
            ("a:-x", ReferenceError::Tag("-x".into())),
            ("a@sha256:123", ReferenceError::Digest("sha256:123".into())),
            ("a@md5:00", ReferenceError::Digest("md5:00".into())),
            ("a//b", ReferenceError::Component(String::new())),
            ("a/", ReferenceError::Component(String::new())),
            ("-a", ReferenceError::Component("-a".into())),
            ("a..b", ReferenceError::Component("a..b".into())),
            ("a___b", ReferenceError::Component("a___b".into())),
            ("a b", ReferenceError::Component("a b".into())),
            ("host:port/x", ReferenceError::Domain("host:port".into())),
            ("-h.io/x", ReferenceError::Domain("-h.io".into())),
            (&"a".repeat(300), ReferenceError::TooLong),
            (&"ab".repeat(32), ReferenceError::LooksLikeId),
        ];
        for (input, want) in table {
            assert_eq!(Reference::parse(input).as_ref(), Err(want), "{input}");
        }
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
    }
}
