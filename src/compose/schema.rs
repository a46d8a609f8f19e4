//! Validation against the compose-spec JSON schema (compose-go's copy, vendored as
//! `compose-spec.json`, Apache-2.0). Errors come back as compose key paths so that the loader can
//! point them into the file.
use serde_json::Value;
use std::sync::OnceLock;

const SCHEMA: &str = include_str!("compose-spec.json");

fn schema() -> &'static Value {
    static S: OnceLock<Value> = OnceLock::new();
    // The schema is a constant shipped with the binary; a test proves it parses.
    S.get_or_init(|| serde_json::from_str(SCHEMA).expect("vendored schema is valid JSON"))
}

fn validator() -> Option<&'static jsonschema::Validator> {
    static V: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    V.get_or_init(|| jsonschema::validator_for(schema()).ok())
        .as_ref()
}

/// One schema violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// Compose key path, e.g. `services.web.ports[0]`.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Known keys at a path, for "did you mean" hints.
fn known_keys(path: &[String]) -> Vec<String> {
    let s = schema();
    let props = match path {
        [] => s.get("properties"),
        [top, _] if top == "services" => s.pointer("/$defs/service/properties"),
        [top, _] if top == "networks" => s.pointer("/$defs/network/properties"),
        [top, _] if top == "volumes" => s.pointer("/$defs/volume/properties"),
        [top, _] if top == "secrets" => s.pointer("/$defs/secret/properties"),
        [top, _] if top == "configs" => s.pointer("/$defs/config/properties"),
        _ => None,
    };
    props
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Levenshtein distance, for hints.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known key closest to `word`, if it is close.
pub fn suggest(word: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| (distance(word, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k.clone())
}

static VALID_DIR: OnceLock<std::path::PathBuf> = OnceLock::new();

/// Keeps a mark under `dir` for each document that passed, so that the next process given the
/// same document skips validating it. Compiling the schema is most of the cost of loading a
/// small project (about 2 ms of every `run` or `ps`); validation is a pure function of the
/// document and the schema, and the mark's name is a hash of both.
pub fn remember_valid_in(dir: std::path::PathBuf) {
    let _ = VALID_DIR.set(dir);
}

fn valid_mark(doc: &Value) -> Option<std::path::PathBuf> {
    use sha2::Digest;
    let dir = VALID_DIR.get()?;
    let mut h = sha2::Sha256::new();
    h.update(schema_tag().to_le_bytes());
    h.update(serde_json::to_vec(doc).ok()?);
    Some(dir.join(hex::encode(&h.finalize()[..16])))
}

/// A fingerprint of the vendored schema (and so of the validator's verdicts).
fn schema_tag() -> u64 {
    use std::hash::{Hash, Hasher};
    static TAG: OnceLock<u64> = OnceLock::new();
    *TAG.get_or_init(|| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        SCHEMA.hash(&mut h);
        h.finish()
    })
}

/// Validates a whole compose document.
pub fn validate(doc: &Value) -> Vec<SchemaError> {
    let mark = valid_mark(doc);
    if mark.as_ref().is_some_and(|m| m.exists()) {
        return Vec::new();
    }
    let out = violations(doc);
    if out.is_empty()
        && let Some(m) = mark
    {
        let _ = m.parent().map(std::fs::create_dir_all);
        let _ = std::fs::write(&m, "");
    }
    out
}

fn violations(doc: &Value) -> Vec<SchemaError> {
    let Some(v) = validator() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in v.iter_errors(doc) {
        let segs: Vec<String> = e
            .instance_path()
            .into_iter()
            .map(|s| match s {
                jsonschema::paths::LocationSegment::Property(p) => p.to_string(),
                jsonschema::paths::LocationSegment::Index(i) => format!("[{i}]"),
            })
            .collect();
        let mut path = String::new();
        for s in &segs {
            if !s.starts_with('[') && !path.is_empty() {
                path.push('.');
            }
            path.push_str(s);
        }
        let mut message = e.to_string();
        let mut hint = None;
        if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } =
            e.kind()
        {
            let known = known_keys(&segs);
            for u in unexpected {
                let key = if path.is_empty() {
                    u.clone()
                } else {
                    format!("{path}.{u}")
                };
                let hint = suggest(u, &known).map(|k| format!("did you mean {k:?}?"));
                out.push(SchemaError {
                    path: key,
                    message: format!("unknown key {u:?}"),
                    hint: hint
                        .or_else(|| Some("extension keys must start with \"x-\"".to_string())),
                });
            }
            continue;
        }
        if message.len() > 300 {
            message.truncate(300);
            message.push('…');
        }
        if let jsonschema::error::ValidationErrorKind::Type { .. } = e.kind() {
            hint = Some("check the compose specification for this key's form".into());
        }
        out.push(SchemaError {
            path,
            message,
            hint,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_compiles() {
        assert!(validator().is_some());
    }

    #[test]
    fn unknown_key_with_hint() {
        let e = validate(&json!({"services": {"web": {"image": "x", "prots": ["80"]}}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].path, "services.web.prots");
        assert_eq!(e[0].hint.as_deref(), Some("did you mean \"ports\"?"));
    }

    #[test]
    fn type_errors_have_paths() {
        let e = validate(&json!({"services": {"web": {"image": "x", "ports": 5432, "tty": [1]}}}));
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"services.web.ports"), "{e:?}");
        assert!(paths.contains(&"services.web.tty"), "{e:?}");
    }
}
