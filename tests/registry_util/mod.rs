//! Harness for registry tests: Debian's `docker-registry` (the CNCF distribution server) on
//! 127.0.0.1 with storage in a temp dir, plain or with TLS and htpasswd, killed by pid on drop;
//! synthetic OCI images; a TCP proxy that can cut transfers.
#![allow(dead_code, clippy::print_stderr)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::engine::registry::{BlobEvent, CredentialStore, Credentials, Progress, RegistryConfig};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest as _, Sha256};

pub const REGISTRY: &str = "/usr/bin/docker-registry";

/// Why registry tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !Path::new(REGISTRY).exists() {
        return Some(format!(
            "{REGISTRY} is missing (apt-get install docker-registry)"
        ));
    }
    None
}

#[macro_export]
macro_rules! require_registry {
    () => {
        if let Some(reason) = registry_util::skip_reason() {
            eprintln!("SKIPPED {}: {reason}", module_path!());
            return;
        }
    };
}

/// A running registry; killed (by pid) and its storage removed on drop.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub host: String,
    child: Child,
}

pub struct Tls {
    pub ca: PathBuf,
    pub user: String,
    pub password: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// Anonymous, plain HTTP.
    pub fn start() -> Registry {
        Registry::start_with(false).0
    }

    /// With `secure`: TLS (a CA and a certificate for 127.0.0.1 made here with openssl) and
    /// htpasswd basic auth.
    pub fn start_with(secure: bool) -> (Registry, Option<Tls>) {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            d.join("storage").display()
        );
        let mut tls = None;
        if secure {
            let ca = make_certs(d);
            let password = "s3cret-pw".to_owned();
            fs::write(
                d.join("htpasswd"),
                format!("tester:{}\n", bcrypt(&password)),
            )
            .unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                d.join("server.crt").display(),
                d.join("server.key").display(),
                d.join("htpasswd").display()
            ));
            tls = Some(Tls {
                ca,
                user: "tester".into(),
                password,
            });
        }
        fs::write(d.join("config.yml"), config).unwrap();
        let log = fs::File::create(d.join("registry.log")).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let reg = Registry { dir, host, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&reg.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (reg, tls)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The registry's own file for a blob.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bcrypt(password: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))")
        .arg(password)
        .output()
        .expect("python3 is needed to make an htpasswd file");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    hash.replacen("$2b$", "$2a$", 1)
}

/// A CA and a server certificate for 127.0.0.1 signed by it; returns the CA's path.
fn make_certs(d: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .stdin(Stdio::null())
            .output()
            .expect("openssl is needed for the TLS test");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=berth test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    d.join("ca.crt")
}

/// Registry settings confined to `dir`: no system certs dirs, credentials in `dir`.
pub fn config(dir: &Path) -> RegistryConfig {
    RegistryConfig {
        certs_dirs: vec![dir.join("certs.d")],
        insecure: Vec::new(),
        credentials: CredentialStore::new(dir.join("docker").join("config.json")),
        parallel: 4,
    }
}

pub fn creds(tls: &Tls) -> Credentials {
    Credentials {
        username: tls.user.clone(),
        password: tls.password.clone(),
    }
}

/// Records blob events for assertions.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<(String, BlobEvent)>>,
}

impl Recorder {
    pub fn count(&self, f: impl Fn(&BlobEvent) -> bool) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| f(e))
            .count()
    }
}

impl Progress for Recorder {
    fn blob(&self, id: &str, event: BlobEvent) {
        self.events.lock().unwrap().push((id.to_owned(), event));
    }
    fn message(&self, _: &str) {}
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic pseudo-random bytes (incompressible), from a seed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes an OCI image layout directory at `out` with one image: each layer a gzip tar of
/// the given files, a config for `arch`. Returns the image's config digest (its id).
pub fn oci_layout(out: &Path, arch: &str, layers: &[Vec<(&str, Vec<u8>)>]) -> String {
    let blobs = out.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let d = sha(data);
        fs::write(blobs.join(&d[7..]), data).unwrap();
        (d, data.len())
    };
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for files in layers {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        let tar = b.into_inner().unwrap();
        diff_ids.push(sha(&tar));
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).unwrap();
        let (d, n) = put(&gz.finish().unwrap());
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n,
        }));
    }
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "berth test"}],
    });
    let (cd, cn) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": descs,
    });
    let (md, mn) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn}],
    });
    fs::write(out.join("index.json"), index.to_string()).unwrap();
    fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    cd
}

/// A TCP proxy to `target`; while `cut` is set it closes each connection after forwarding
/// `limit` bytes from the server. Records whether a client asked for a byte range.
pub struct Proxy {
    pub host: String,
    pub cut: Arc<AtomicBool>,
    pub limit: u64,
    pub ranges: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start(target: &str, limit: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(true));
        let ranges = Arc::new(AtomicU64::new(0));
        let (target, c, rg) = (target.to_owned(), cut.clone(), ranges.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (c, rg) = (c.clone(), rg.clone());
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c_in.read(&mut buf) {
                        if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                        if text.contains("\r\nrange: bytes=") && !text.contains("range: bytes=0-") {
                            rg.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    let mut sent = 0u64;
                    while let Ok(n) = s_in.read(&mut buf) {
                        if n == 0 || c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                        if c.load(Ordering::SeqCst) && sent > limit {
                            let _ = c_out.shutdown(Shutdown::Both);
                            let _ = s_in.shutdown(Shutdown::Both);
                            return;
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Write);
                });
            }
        });
        Proxy {
            host,
            cut,
            limit,
            ranges,
        }
    }
}
