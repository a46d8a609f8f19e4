//! Platforms (`linux/arm64/v8`) and choosing one manifest out of an index.

use std::fmt;

use serde_json::Value;

/// An OCI platform as `--platform` and compose's `platform:` write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`, or `arch` alone for linux. Architecture aliases are normalised as
    /// containerd does (`x86_64` → `amd64`, `aarch64` → `arm64`).
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => {
                return Err(format!(
                    "invalid platform {s:?}: expected os/arch[/variant]"
                ));
            }
        };
        if os.is_empty() || arch.is_empty() || variant.is_some_and(str::is_empty) {
            return Err(format!(
                "invalid platform {s:?}: expected os/arch[/variant]"
            ));
        }
        let (architecture, variant) = normalise_arch(&arch.to_lowercase(), variant);
        Ok(Platform {
            os: os.to_lowercase(),
            architecture,
            variant,
        })
    }

    /// The platform of this machine.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: crate::engine::image::host_arch().into(),
            variant: None,
        }
    }

    /// True when an index entry's `platform` object is acceptable for this platform. A missing
    /// variant on either side matches (arm64 images rarely say `v8`).
    pub fn matches(&self, platform: &Value) -> bool {
        let field = |k: &str| platform.get(k).and_then(Value::as_str);
        let (Some(os), Some(arch)) = (field("os"), field("architecture")) else {
            return false;
        };
        let (arch, variant) = normalise_arch(arch, field("variant"));
        os == self.os
            && arch == self.architecture
            && match (&self.variant, &variant) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    }
}

fn normalise_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let (arch, variant) = match (arch, variant) {
        ("x86_64" | "x86-64", v) => ("amd64", v),
        ("aarch64", v) => ("arm64", v),
        ("armhf", None) => ("arm", Some("v7")),
        ("armel", None) => ("arm", Some("v6")),
        ("arm64", Some("v8")) => ("arm64", None),
        (a, v) => (a, v),
    };
    (arch.to_owned(), variant.map(str::to_owned))
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The platforms an index lists, for the error when none fits.
pub(crate) fn describe(platform: &Value) -> String {
    let field = |k: &str| platform.get(k).and_then(Value::as_str).unwrap_or("?");
    match platform.get("variant").and_then(Value::as_str) {
        Some(v) => format!("{}/{}/{v}", field("os"), field("architecture")),
        None => format!("{}/{}", field("os"), field("architecture")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_normalises() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        assert_eq!(
            Platform::parse("x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!(Platform::parse("linux/").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }

    #[test]
    fn matches_index_entries() {
        let arm7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(arm7.matches(&json!({"os": "linux", "architecture": "arm", "variant": "v7"})));
        assert!(!arm7.matches(&json!({"os": "linux", "architecture": "arm", "variant": "v6"})));
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(arm64.matches(&json!({"os": "linux", "architecture": "arm64", "variant": "v8"})));
        assert!(!arm64.matches(&json!({"os": "linux", "architecture": "amd64"})));
        assert!(!arm64.matches(&json!({"os": "windows", "architecture": "arm64"})));
        assert!(!arm64.matches(&json!({})));
    }
}
