//! Registry credentials in Docker's file, `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`): `auths.<host>.auth` = base64 `user:password`, or a credential
//! helper named by `credHelpers.<host>` / `credsStore`, so logins made with docker work here
//! and the other way round.
//!
//! The file is written atomically with mode 0600 and every other key in it is kept. A helper
//! that is configured but fails is an error, never a silent fallback to another source
//! (CVE-2021-41092). Passwords never appear in `Debug` output or error messages.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::error::RegistryError;

/// The key docker uses for Docker Hub in `auths`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Docker's `config.json`, located once.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    pub fn new(path: PathBuf) -> CredentialStore {
        CredentialStore { path }
    }

    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn from_env() -> CredentialStore {
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".docker"),
        };
        CredentialStore::new(dir.join("config.json"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials stored for a registry host (`docker.io`, `localhost:5000`), if any.
    pub fn get(&self, host: &str) -> Result<Option<Credentials>, RegistryError> {
        let config = self.read()?;
        if let Some(helper) = helper_for(&config, host) {
            return helper_get(&helper, &server_key(host));
        }
        let Some(auths) = config.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        let Some(entry) = auths
            .iter()
            .find(|(k, _)| normalise_key(k) == normalise_key(&server_key(host)))
            .map(|(_, v)| v)
        else {
            return Ok(None);
        };
        let bad = |reason: &str| RegistryError::Credentials {
            path: self.path.clone(),
            reason: format!("auths entry for {host}: {reason}"),
        };
        if let Some(auth) = entry.get("auth").and_then(Value::as_str)
            && !auth.is_empty()
        {
            let decoded = BASE64
                .decode(auth.trim())
                .map_err(|_| bad("`auth` is not base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad("`auth` is not UTF-8"))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| bad("`auth` is not user:password"))?;
            return Ok(Some(Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        match (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            (Some(u), Some(p)) => Ok(Some(Credentials {
                username: u.to_owned(),
                password: p.to_owned(),
            })),
            _ => Ok(None),
        }
    }

    /// Stores credentials for `host` (`berth login`), through the configured helper if any.
    pub fn store(&self, host: &str, creds: &Credentials) -> Result<(), RegistryError> {
        let mut config = self.read()?;
        let key = server_key(host);
        if let Some(helper) = helper_for(&config, host) {
            let input =
                json!({"ServerURL": key, "Username": creds.username, "Secret": creds.password});
            helper_run(&helper, "store", &input.to_string())?;
            // docker keeps an empty entry so `auths` lists the registry.
            auths_mut(&mut config).insert(key, json!({}));
        } else {
            let auth = BASE64.encode(format!("{}:{}", creds.username, creds.password));
            auths_mut(&mut config).insert(key, json!({ "auth": auth }));
        }
        self.write(&config)
    }

    /// Removes the credentials for `host` (`berth logout`); false when there were none.
    pub fn remove(&self, host: &str) -> Result<bool, RegistryError> {
        let mut config = self.read()?;
        let key = server_key(host);
        if let Some(helper) = helper_for(&config, host) {
            helper_run(&helper, "erase", &key)?;
        }
        let auths = auths_mut(&mut config);
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| normalise_key(k) == normalise_key(&key))
            .cloned()
            .collect();
        for k in &keys {
            auths.remove(k);
        }
        if !keys.is_empty() {
            self.write(&config)?;
        }
        Ok(!keys.is_empty())
    }

    fn read(&self) -> Result<Value, RegistryError> {
        match fs::read(&self.path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(json!({})),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RegistryError::Credentials {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
            Err(e) => Err(RegistryError::io(&self.path, e)),
        }
    }

    fn write(&self, config: &Value) -> Result<(), RegistryError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| RegistryError::io(dir, e))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| RegistryError::io(dir, e))?;
        }
        let tmp = self
            .path
            .with_extension(format!("json.{:08x}", rand::random::<u32>()));
        let bytes = serde_json::to_vec_pretty(config).expect("a json value serialises");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| RegistryError::io(&tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(|e| RegistryError::io(&tmp, e))?;
        fs::rename(&tmp, &self.path).map_err(|e| RegistryError::io(&self.path, e))
    }
}

fn auths_mut(config: &mut Value) -> &mut Map<String, Value> {
    if !config.is_object() {
        *config = json!({});
    }
    let obj = config.as_object_mut().expect("made an object above");
    let auths = obj.entry("auths").or_insert_with(|| json!({}));
    if !auths.is_object() {
        *auths = json!({});
    }
    auths.as_object_mut().expect("made an object above")
}

/// The `auths` key docker uses for a registry host.
fn server_key(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_owned(),
        h => h.to_owned(),
    }
}

/// `https://host/v1/` and `host` name the same registry.
fn normalise_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.split('/').next().unwrap_or(key);
    match key {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io",
        k => k,
    }
}

fn helper_for(config: &Value, host: &str) -> Option<String> {
    let key = server_key(host);
    config
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| normalise_key(k) == normalise_key(&key))
                .map(|(_, v)| v)
        })
        .or_else(|| config.get("credsStore"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn helper_get(helper: &str, key: &str) -> Result<Option<Credentials>, RegistryError> {
    let out = match helper_run(helper, "get", key) {
        Ok(out) => out,
        Err(RegistryError::Helper { reason, .. }) if reason.contains("credentials not found") => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let v: Value = serde_json::from_str(&out).map_err(|e| RegistryError::Helper {
        helper: helper.to_owned(),
        reason: format!("invalid answer to get: {e}"),
    })?;
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Ok(Some(Credentials {
        username: field("Username"),
        password: field("Secret"),
    }))
}

/// Runs `docker-credential-<helper> <op>` with `input` on stdin; its stdout on success.
fn helper_run(helper: &str, op: &str, input: &str) -> Result<String, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let err = |reason: String| RegistryError::Helper {
        helper: program.clone(),
        reason,
    };
    let mut child = Command::new(&program)
        .arg(op)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("{op}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let msg = format!(
            "{} {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Err(err(format!("{op} failed: {}", msg.trim())));
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn store_get_remove_round_trip_keeps_other_keys() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("docker").join("config.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, r#"{"psFormat": "table", "auths": {}}"#).unwrap();
        let s = CredentialStore::new(path.clone());
        s.store("localhost:5000", &creds("alice", "s3:cret"))
            .unwrap();
        assert_eq!(
            s.get("localhost:5000").unwrap(),
            Some(creds("alice", "s3:cret"))
        );
        assert_eq!(s.get("localhost:5001").unwrap(), None);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "table");
        assert_eq!(
            v["auths"]["localhost:5000"]["auth"],
            BASE64.encode("alice:s3:cret")
        );
        assert!(s.remove("localhost:5000").unwrap());
        assert!(!s.remove("localhost:5000").unwrap());
        assert_eq!(s.get("localhost:5000").unwrap(), None);
    }

    #[test]
    fn reads_docker_hub_entries_written_by_docker() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("config.json");
        let auth = BASE64.encode("bob:pw");
        fs::write(
            &path,
            format!(r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}}}}}"#),
        )
        .unwrap();
        let s = CredentialStore::new(path);
        assert_eq!(s.get("docker.io").unwrap(), Some(creds("bob", "pw")));
        assert!(!format!("{:?}", creds("bob", "pw")).contains("pw\""));
    }

    #[test]
    fn a_broken_helper_is_an_error_not_a_fallback() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("config.json");
        let auth = BASE64.encode("bob:pw");
        fs::write(
            &path,
            format!(
                r#"{{"credsStore": "berth-test-missing", "auths": {{"localhost:5000": {{"auth": "{auth}"}}}}}}"#
            ),
        )
        .unwrap();
        let s = CredentialStore::new(path);
        assert!(matches!(
            s.get("localhost:5000"),
            Err(RegistryError::Helper { .. })
        ));
        assert!(s.store("localhost:5000", &creds("a", "b")).is_err());
    }
}
