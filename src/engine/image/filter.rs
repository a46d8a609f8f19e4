//! `images --filter`: `dangling=true|false`, `label=KEY` / `label=KEY=VALUE`,
//! `reference=PATTERN` (a glob over `repository` and `repository:tag`, `*` not crossing `/`).
//! Filters of one kind are alternatives, of different kinds all must hold, as with docker.

use super::digest::Digest;
use super::error::ImageError;
use super::{ImageStore, ImageSummary};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Dangling(bool),
    Label { key: String, value: Option<String> },
    Reference(String),
}

impl Filter {
    /// `dangling=true`, `label=a=b`, `reference=busy*`.
    pub fn parse(s: &str) -> Result<Filter, String> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid filter {s:?}: expected KEY=VALUE"))?;
        Ok(match k {
            "dangling" => match v {
                "true" | "1" => Filter::Dangling(true),
                "false" | "0" => Filter::Dangling(false),
                _ => return Err(format!("invalid filter {s:?}: dangling is true or false")),
            },
            "label" => match v.split_once('=') {
                Some((k, v)) => Filter::Label {
                    key: k.into(),
                    value: Some(v.into()),
                },
                None => Filter::Label {
                    key: v.into(),
                    value: None,
                },
            },
            "reference" => Filter::Reference(v.into()),
            _ => {
                return Err(format!(
                    "invalid filter {k:?}: berth filters images by dangling, label or reference"
                ));
            }
        })
    }

    fn kind(&self) -> u8 {
        match self {
            Filter::Dangling(_) => 0,
            Filter::Label { .. } => 1,
            Filter::Reference(_) => 2,
        }
    }
}

impl ImageStore {
    /// [`ImageStore::list`] keeping the rows every kind of filter accepts.
    pub fn list_filtered(&self, filters: &[Filter]) -> Result<Vec<ImageSummary>, ImageError> {
        let rows = self.list()?;
        let mut out = Vec::new();
        for row in rows {
            let mut ok = true;
            for kind in 0..3 {
                let of_kind: Vec<&Filter> = filters.iter().filter(|f| f.kind() == kind).collect();
                if of_kind.is_empty() {
                    continue;
                }
                let mut any = false;
                for f in of_kind {
                    any |= self.matches(f, &row)?;
                }
                ok &= any;
            }
            if ok {
                out.push(row);
            }
        }
        Ok(out)
    }

    fn matches(&self, f: &Filter, row: &ImageSummary) -> Result<bool, ImageError> {
        Ok(match f {
            Filter::Dangling(d) => row.reference.is_none() == *d,
            Filter::Reference(p) => {
                row.reference.is_some()
                    && (glob(p, &row.repository)
                        || glob(p, &format!("{}:{}", row.repository, row.tag)))
            }
            Filter::Label { key, value } => {
                let Some(config) = Digest::parse(&row.id) else {
                    return Ok(false);
                };
                let c: serde_json::Value = serde_json::from_slice(&self.blobs.read_json(&config)?)
                    .map_err(|e| ImageError::invalid(&row.id, "image config", e))?;
                match (&c["config"]["Labels"][key], value) {
                    (serde_json::Value::String(_), None) => true,
                    (serde_json::Value::String(v), Some(want)) => v == want,
                    _ => false,
                }
            }
        })
    }
}

/// `*` matches any run of characters but `/`, `?` one character but `/`; the rest literally.
pub fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    fn go(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len())
                .take_while(|i| *i == 0 || s[i - 1] != '/')
                .any(|i| go(rest, &s[i..])),
            Some(('?', rest)) => s.first().is_some_and(|c| *c != '/') && go(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("busybox:*", "busybox:latest"));
        assert!(glob("*/app", "localhost:5000/app"));
        assert!(!glob("*", "a/b"));
        assert!(glob("b?sybox", "busybox"));
        assert!(!glob("busy", "busybox"));
    }

    #[test]
    fn filters_parse() {
        assert_eq!(Filter::parse("dangling=true"), Ok(Filter::Dangling(true)));
        assert_eq!(
            Filter::parse("label=a=b"),
            Ok(Filter::Label {
                key: "a".into(),
                value: Some("b".into())
            })
        );
        assert_eq!(
            Filter::parse("reference=x*"),
            Ok(Filter::Reference("x*".into()))
        );
        assert!(Filter::parse("dangling=maybe").is_err());
        assert!(Filter::parse("before=x").is_err());
        assert!(Filter::parse("nokey").is_err());
    }
}
