//! Connecting to one registry host: TLS trust, HTTPS or plain HTTP, credentials; and `login`.
//!
//! Plain HTTP is only ever used for loopback hosts and hosts the user listed as insecure, and
//! only after HTTPS failed to connect, as docker does. CA certificates for a host come from
//! `<certs dir>/<host>/*.crt` on top of the system roots.

use std::sync::Once;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;

use super::credentials::Credentials;
use super::error::RegistryError;
use super::{RegistryConfig, is_loopback_host};

/// A client for one registry host, with the credentials to use there.
pub(crate) struct Connection {
    pub client: oci_client::Client,
    pub auth: RegistryAuth,
}

/// The host to talk to for a reference's domain.
pub(crate) fn api_host(domain: &str) -> &str {
    match domain {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        d => d,
    }
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when another provider is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The PEM certificates in `<dir>/<host>/*.crt` for each configured directory.
fn host_certificates(config: &RegistryConfig, host: &str) -> Result<Vec<Vec<u8>>, RegistryError> {
    let mut certs = Vec::new();
    // `host:port` is a directory name docker uses as is; never let it climb out.
    if host.contains('/') || host.starts_with('.') {
        return Ok(certs);
    }
    for dir in &config.certs_dirs {
        let dir = dir.join(host);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "crt"))
            .collect();
        files.sort();
        for f in files {
            certs.push(std::fs::read(&f).map_err(|e| RegistryError::io(&f, e))?);
        }
    }
    Ok(certs)
}

/// A plain reqwest client with the same trust as the registry client, for probes and login.
fn http_client(
    config: &RegistryConfig,
    host: &str,
    certs: &[Vec<u8>],
) -> Result<reqwest::Client, RegistryError> {
    install_crypto_provider();
    let connect = |reason: String| RegistryError::Connect {
        host: host.to_owned(),
        reason,
    };
    let mut roots = Vec::new();
    for pem in certs {
        roots.push(reqwest::Certificate::from_pem(pem).map_err(|e| connect(e.to_string()))?);
    }
    reqwest::Client::builder()
        .tls_certs_merge(roots)
        .danger_accept_invalid_certs(config.insecure.iter().any(|h| h == host))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| connect(error_chain(&e)))
}

/// `https` unless HTTPS cannot connect to a host that may use plain HTTP.
async fn scheme(
    config: &RegistryConfig,
    http: &reqwest::Client,
    host: &str,
) -> Result<&'static str, RegistryError> {
    let may_be_plain = is_loopback_host(host) || config.insecure.iter().any(|h| h == host);
    match http.get(format!("https://{host}/v2/")).send().await {
        Ok(_) => Ok("https"),
        // A server that presented a certificate speaks TLS: falling back to plain HTTP
        // would be a downgrade, so a certificate problem is an error even on loopback.
        Err(e) if may_be_plain && !error_chain(&e).contains("certificate") => Ok("http"),
        Err(e) => Err(RegistryError::Connect {
            host: host.to_owned(),
            reason: error_chain(&e),
        }),
    }
}

/// Opens a connection to `host` (a reference's domain) with the stored credentials.
pub(crate) async fn connect(
    config: &RegistryConfig,
    domain: &str,
) -> Result<Connection, RegistryError> {
    let host = api_host(domain);
    let certs = host_certificates(config, host)?;
    let http = http_client(config, host, &certs)?;
    let scheme = scheme(config, &http, host).await?;
    let auth = match config.credentials.get(domain)? {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    };
    let client_config = ClientConfig {
        protocol: if scheme == "http" {
            ClientProtocol::HttpsExcept(vec![domain.to_owned(), host.to_owned()])
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: config.insecure.iter().any(|h| h == host),
        extra_root_certificates: certs
            .into_iter()
            .map(|data| Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            })
            .collect(),
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(120)),
        max_concurrent_download: config.parallel.max(1),
        max_concurrent_upload: config.parallel.max(1),
        user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    };
    let client =
        oci_client::Client::try_from(client_config).map_err(|e| RegistryError::Connect {
            host: host.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(Connection { client, auth })
}

/// Checks credentials against `host` as `docker login` does (`GET /v2/` with basic auth,
/// following a bearer challenge to its token server); stores nothing.
pub async fn login(
    config: &RegistryConfig,
    domain: &str,
    creds: &Credentials,
) -> Result<(), RegistryError> {
    let host = api_host(domain);
    let certs = host_certificates(config, host)?;
    let http = http_client(config, host, &certs)?;
    let scheme = scheme(config, &http, host).await?;
    let net = |e: reqwest::Error| RegistryError::Connect {
        host: host.to_owned(),
        reason: error_chain(&e),
    };
    let unauthorized = |reason: String| RegistryError::Unauthorized {
        host: domain.to_owned(),
        reason,
    };
    let res = http
        .get(format!("{scheme}://{host}/v2/"))
        .basic_auth(&creds.username, Some(&creds.password))
        .send()
        .await
        .map_err(net)?;
    if res.status().is_success() {
        return Ok(());
    }
    if res.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(RegistryError::Connect {
            host: host.to_owned(),
            reason: format!("GET /v2/ answered {}", res.status()),
        });
    }
    let challenge = res
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Some(params) = bearer_params(&challenge) else {
        return Err(unauthorized("incorrect username or password".into()));
    };
    let realm = params
        .iter()
        .find(|(k, _)| k == "realm")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| unauthorized("bearer challenge without realm".into()))?;
    let mut query = vec![("account".to_owned(), creds.username.clone())];
    if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
        query.push(("service".into(), service.clone()));
    }
    let token = http
        .get(&realm)
        .query(&query)
        .basic_auth(&creds.username, Some(&creds.password))
        .send()
        .await
        .map_err(net)?;
    if token.status().is_success() {
        Ok(())
    } else {
        Err(unauthorized(format!(
            "the token server answered {}",
            token.status()
        )))
    }
}

/// The parameters of a `Bearer k="v",…` challenge.
fn bearer_params(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim();
    let rest = rest
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("bearer "))
        .map(|_| &rest[7..])?;
    let mut out = Vec::new();
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push((key, value.to_owned()));
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
}

/// An error with its causes, `a: b: c`, for errors that carry the interesting part inside.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let p = bearer_params(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(
            p[0],
            ("realm".into(), "https://auth.docker.io/token".into())
        );
        assert_eq!(p[1], ("service".into(), "registry.docker.io".into()));
        assert_eq!(p.len(), 3);
        assert!(bearer_params(r#"Basic realm="x""#).is_none());
    }

    #[test]
    fn hub_is_reached_at_its_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("localhost:5000"), "localhost:5000");
    }
}
