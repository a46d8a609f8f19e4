//! The typed compose model. Short syntaxes deserialize straight into their long forms, so the
//! rest of berth only ever sees one shape per concept.
use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, de};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A loaded project: the merged, interpolated and normalised compose model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Project {
    pub name: String,
    #[serde(skip)]
    pub working_dir: PathBuf,
    #[serde(skip)]
    pub compose_files: Vec<PathBuf>,
    pub services: BTreeMap<String, Service>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Network>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Volume>,
}

/// The file as written, before project-level normalisation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeFile {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<serde_json::Value>,
    #[serde(default)]
    pub services: IndexMap<String, Service>,
    #[serde(default, deserialize_with = "map_of_optional")]
    pub networks: BTreeMap<String, Network>,
    #[serde(default, deserialize_with = "map_of_optional")]
    pub volumes: BTreeMap<String, Volume>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(skip)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(
        default,
        deserialize_with = "command",
        skip_serializing_if = "Option::is_none"
    )]
    pub command: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "command",
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "mapping_or_list",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub environment: BTreeMap<String, Option<String>>,
    #[serde(
        default,
        deserialize_with = "ports",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<ServicePort>,
    #[serde(
        default,
        deserialize_with = "service_volumes",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub volumes: Vec<ServiceVolume>,
    #[serde(
        default,
        deserialize_with = "depends_on",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub depends_on: BTreeMap<String, DependsOn>,
    #[serde(
        default,
        deserialize_with = "service_networks",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub networks: BTreeMap<String, ServiceNetwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(
        default,
        deserialize_with = "labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
}

/// A published port in long form.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    pub target: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn tcp() -> String {
    "tcp".into()
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    Volume,
    Bind,
    Tmpfs,
}

/// A mount in long form. For `bind`, `source` is an absolute host path once loaded.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct ServiceVolume {
    #[serde(rename = "type")]
    pub kind: VolumeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DependsOn {
    #[serde(default = "service_started")]
    pub condition: String,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default)]
    pub restart: bool,
}

fn service_started() -> String {
    "service_started".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The name on the host; `<project>_<key>` unless set or external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    #[serde(
        default,
        deserialize_with = "labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// The name on the host; `<project>_<key>` unless set or external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(
        default,
        deserialize_with = "labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

// ---- short-syntax deserializers -------------------------------------------------------------

/// Top-level `networks:`/`volumes:` entries may be empty (`site:`), meaning all defaults.
fn map_of_optional<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let m = Option::<BTreeMap<String, Option<T>>>::deserialize(d)?.unwrap_or_default();
    Ok(m.into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    String(String),
    List(Vec<String>),
}

fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match Option::<StringOrList>::deserialize(d)? {
        None => Ok(None),
        Some(StringOrList::List(v)) => Ok(Some(v)),
        Some(StringOrList::String(s)) => shell_words::split(&s)
            .map(Some)
            .map_err(|e| de::Error::custom(format!("invalid command {s:?}: {e}"))),
    }
}

/// A scalar that YAML may have typed as a number or boolean; compose wants its text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::String(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MapOrList {
    Map(BTreeMap<String, Option<Scalar>>),
    List(Vec<String>),
}

/// `environment`: a map, or a list of `KEY=VALUE` / bare `KEY` (value taken from the environment).
fn mapping_or_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    Ok(match Option::<MapOrList>::deserialize(d)? {
        None => BTreeMap::new(),
        Some(MapOrList::Map(m)) => m
            .into_iter()
            .map(|(k, v)| (k, v.map(Scalar::text)))
            .collect(),
        Some(MapOrList::List(l)) => l
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (e, None),
            })
            .collect(),
    })
}

fn labels<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(mapping_or_list(d)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortEntry {
    Long(ServicePort),
    Short(Scalar),
}

fn ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServicePort>, D::Error> {
    let entries = Option::<Vec<PortEntry>>::deserialize(d)?.unwrap_or_default();
    let mut out = Vec::new();
    for e in entries {
        match e {
            PortEntry::Long(p) => out.push(p),
            PortEntry::Short(s) => out.extend(parse_port(&s.text()).map_err(de::Error::custom)?),
        }
    }
    Ok(out)
}

/// Parses the short port syntax `[[HOST_IP:]HOST[-HOST]:]CONTAINER[-CONTAINER][/PROTO]`.
pub fn parse_port(spec: &str) -> Result<Vec<ServicePort>, String> {
    let bad = |why: &str| format!("invalid port {spec:?}: {why}");
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_string()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad("protocol must be tcp, udp or sctp"));
    }
    // The host IP may be bracketed IPv6 containing colons.
    let (host_ip, rest) = if let Some(stripped) = rest.strip_prefix('[') {
        let (ip, after) = stripped.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        let after = after
            .strip_prefix(':')
            .ok_or_else(|| bad("expected : after ]"))?;
        (Some(ip.to_string()), after)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest),
            3 => (Some(parts[0].to_string()), &rest[parts[0].len() + 1..]),
            _ => return Err(bad("too many colons")),
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some((h, c)) => (if h.is_empty() { None } else { Some(h) }, c),
        None => (None, rest),
    };
    let range = |s: &str| -> Result<(u16, u16), String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let a: u16 = a
            .parse()
            .map_err(|_| bad("port must be a number from 0 to 65535"))?;
        let b: u16 = b
            .parse()
            .map_err(|_| bad("port must be a number from 0 to 65535"))?;
        if b < a {
            return Err(bad("range end is below its start"));
        }
        Ok((a, b))
    };
    let (t0, t1) = range(target)?;
    let host = published.map(range).transpose()?;
    let count = t1 - t0 + 1;
    if let Some((h0, h1)) = host
        && count > 1
        && h1 - h0 + 1 != count
    {
        return Err(bad("host and container ranges differ in length"));
    }
    Ok((0..count)
        .map(|i| ServicePort {
            target: t0 + i,
            published: host.map(|(h0, h1)| {
                if count == 1 && h1 > h0 {
                    format!("{h0}-{h1}")
                } else {
                    (h0 + i).to_string()
                }
            }),
            host_ip: host_ip.clone().filter(|s| !s.is_empty()),
            protocol: protocol.clone(),
            mode: Some("ingress".into()),
            name: None,
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VolumeEntry {
    Long(ServiceVolume),
    Short(String),
}

fn service_volumes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServiceVolume>, D::Error> {
    let entries = Option::<Vec<VolumeEntry>>::deserialize(d)?.unwrap_or_default();
    entries
        .into_iter()
        .map(|e| match e {
            VolumeEntry::Long(v) => Ok(v),
            VolumeEntry::Short(s) => parse_volume(&s).map_err(de::Error::custom),
        })
        .collect()
}

/// Parses the short volume syntax `[SOURCE:]TARGET[:MODE]`.
pub fn parse_volume(spec: &str) -> Result<ServiceVolume, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err(format!("invalid volume {spec:?}: too many colons")),
    };
    if !target.starts_with('/') {
        return Err(format!(
            "invalid volume {spec:?}: the container path {target:?} must be absolute"
        ));
    }
    let read_only = mode.is_some_and(|m| m.split(',').any(|o| o == "ro"));
    let kind = match source {
        None => VolumeType::Volume,
        Some(s) if s.starts_with('.') || s.starts_with('/') || s.starts_with('~') => {
            VolumeType::Bind
        }
        Some(_) => VolumeType::Volume,
    };
    Ok(ServiceVolume {
        kind,
        source: source.map(str::to_string),
        target: target.to_string(),
        read_only,
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DependsOnEntry {
    List(Vec<String>),
    Map(BTreeMap<String, DependsOn>),
}

fn depends_on<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, DependsOn>, D::Error> {
    Ok(match Option::<DependsOnEntry>::deserialize(d)? {
        None => BTreeMap::new(),
        Some(DependsOnEntry::Map(m)) => m,
        Some(DependsOnEntry::List(l)) => l
            .into_iter()
            .map(|s| {
                let dep = DependsOn {
                    condition: service_started(),
                    required: true,
                    restart: false,
                };
                (s, dep)
            })
            .collect(),
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NetworksEntry {
    List(Vec<String>),
    Map(BTreeMap<String, Option<ServiceNetwork>>),
}

fn service_networks<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ServiceNetwork>, D::Error> {
    Ok(match Option::<NetworksEntry>::deserialize(d)? {
        None => BTreeMap::new(),
        Some(NetworksEntry::List(l)) => l.into_iter().map(|n| (n, Default::default())).collect(),
        Some(NetworksEntry::Map(m)) => m
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ports() {
        let p = parse_port("18080:8080").unwrap();
        assert_eq!(p[0].target, 8080);
        assert_eq!(p[0].published.as_deref(), Some("18080"));
        let p = parse_port("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(p[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(p[0].protocol, "udp");
        let p = parse_port("[::1]:80:80").unwrap();
        assert_eq!(p[0].host_ip.as_deref(), Some("::1"));
        let p = parse_port("9000-9002:8000-8002").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[2].published.as_deref(), Some("9002"));
        assert_eq!(parse_port("80").unwrap()[0].published, None);
        assert!(parse_port("http:80").is_err());
        assert!(parse_port("80/xdp").is_err());
    }

    #[test]
    fn short_volumes() {
        let v = parse_volume("site:/var/www").unwrap();
        assert_eq!(v.kind, VolumeType::Volume);
        let v = parse_volume("./data:/data:ro").unwrap();
        assert_eq!(v.kind, VolumeType::Bind);
        assert!(v.read_only);
        assert!(parse_volume("data").is_err());
    }
}
