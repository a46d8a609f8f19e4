//! Deserializers for the short syntaxes and flexible scalars of the compose file: each short
//! form becomes its long form here, so the rest of berth sees one shape per concept.
use super::*;
use serde::{Deserialize, Deserializer, de};
use std::collections::BTreeMap;

/// An error about item `i` of a list that a custom deserializer read whole; the loader turns the
/// `@i@` prefix back into `[i]` in the key path (see `normalize::typed`).
pub(super) fn item_error<E: de::Error>(i: usize, msg: String) -> E {
    E::custom(format!("@{i}@{msg}"))
}

// ---- flexible scalars -------------------------------------------------------------------------

/// `true`/`false`, also written as a string (compose-go's cast accepts yes/no/on/off too).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "y" | "yes" | "on" => Some(true),
        "false" | "n" | "no" | "off" => Some(false),
        _ => None,
    }
}

pub(super) fn flex_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_bool(d)?.unwrap_or(false))
}

pub(super) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Scalar>::deserialize(d)? {
        None => Ok(None),
        Some(Scalar::Bool(b)) => Ok(Some(b)),
        Some(s) => {
            let t = s.text();
            parse_bool(&t)
                .map(Some)
                .ok_or_else(|| de::Error::custom(format!("expected a boolean, got {t:?}")))
        }
    }
}

/// `external: true`, or the legacy `external: {name: x}` form (taken as true).
pub(super) fn external<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(b),
        Some(serde_json::Value::String(s)) => parse_bool(&s)
            .ok_or_else(|| de::Error::custom(format!("expected a boolean, got {s:?}"))),
        Some(serde_json::Value::Object(_)) => Ok(true),
        Some(v) => Err(de::Error::custom(format!("expected a boolean, got {v}"))),
    }
}

pub(super) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Scalar>::deserialize(d)? {
        None => Ok(None),
        Some(Scalar::Int(i)) => Ok(Some(i)),
        Some(Scalar::Float(f)) if f.fract() == 0.0 => Ok(Some(f as i64)),
        Some(s) => {
            let t = s.text();
            t.trim()
                .parse()
                .map(Some)
                .map_err(|_| de::Error::custom(format!("expected an integer, got {t:?}")))
        }
    }
}

/// An integer printed as a decimal string, as compose-go prints its `UnitBytes` fields.
pub(super) fn decimal_string<S: serde::Serializer>(
    v: &Option<i64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(n) => s.serialize_str(&n.to_string()),
        None => s.serialize_none(),
    }
}

pub(super) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<Scalar>::deserialize(d)? {
        None => Ok(None),
        Some(Scalar::Int(i)) => Ok(Some(i as f64)),
        Some(Scalar::Float(f)) => Ok(Some(f)),
        Some(s) => {
            let t = s.text();
            t.trim()
                .parse()
                .map(Some)
                .map_err(|_| de::Error::custom(format!("expected a number, got {t:?}")))
        }
    }
}

/// A scalar kept as text (byte sizes like `1g`, uids).
pub(super) fn opt_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(Scalar::text))
}

/// A file mode: a number (YAML `0o440` or `288`) or an octal string (`"0440"`).
pub(super) fn opt_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<Scalar>::deserialize(d)? {
        None => Ok(None),
        Some(Scalar::Int(i)) => u32::try_from(i)
            .map(Some)
            .map_err(|_| de::Error::custom(format!("invalid file mode {i}"))),
        Some(s) => {
            let t = s.text();
            u32::from_str_radix(t.trim_start_matches("0o"), 8)
                .map(Some)
                .map_err(|_| de::Error::custom(format!("invalid file mode {t:?}")))
        }
    }
}

pub(super) fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<StringOrList>::deserialize(d)? {
        None => Vec::new(),
        Some(StringOrList::String(s)) => vec![s],
        Some(StringOrList::List(l)) => l,
    })
}

/// A list of scalars as text (`expose: [80, "443/tcp"]`).
pub(super) fn scalar_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<Scalar>>::deserialize(d)?
        .unwrap_or_default()
        .into_iter()
        .map(Scalar::text)
        .collect())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BuildEntry {
    Context(String),
    Long(Box<BuildConfig>),
}

pub(super) fn build<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BuildConfig>, D::Error> {
    Ok(match Option::<BuildEntry>::deserialize(d)? {
        None => None,
        Some(BuildEntry::Context(c)) => Some(BuildConfig {
            context: Some(c),
            ..Default::default()
        }),
        Some(BuildEntry::Long(mut b)) => {
            if b.context.is_none() && b.dockerfile_inline.is_none() {
                b.context = Some(".".into());
            }
            Some(*b)
        }
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FileRefEntry {
    Short(String),
    Long(FileRef),
}

pub(super) fn file_refs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FileRef>, D::Error> {
    Ok(Option::<Vec<FileRefEntry>>::deserialize(d)?
        .unwrap_or_default()
        .into_iter()
        .map(|e| match e {
            FileRefEntry::Short(s) => FileRef {
                source: s,
                ..Default::default()
            },
            FileRefEntry::Long(r) => r,
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DeviceEntry {
    Short(String),
    Long(DeviceMapping),
}

pub(super) fn devices<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DeviceMapping>, D::Error> {
    Option::<Vec<DeviceEntry>>::deserialize(d)?
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, e)| match e {
            DeviceEntry::Long(m) => Ok(m),
            DeviceEntry::Short(s) => parse_device(&s).map_err(|e| item_error(i, e)),
        })
        .collect()
}

/// `HOST[:CONTAINER[:PERMISSIONS]]`, or a CDI name like `vendor.com/class=name`.
pub fn parse_device(spec: &str) -> Result<DeviceMapping, String> {
    if spec.contains('=') && !spec.starts_with('/') {
        return Ok(DeviceMapping {
            source: spec.into(),
            target: String::new(),
            permissions: None,
        });
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, permissions) = match parts.as_slice() {
        [s] => (*s, *s, None),
        [s, t] if t.starts_with('/') => (*s, *t, None),
        [s, p] => (*s, *s, Some(*p)),
        [s, t, p] => (*s, *t, Some(*p)),
        _ => return Err(format!("invalid device {spec:?}: too many colons")),
    };
    if source.is_empty() {
        return Err(format!("invalid device {spec:?}: empty host path"));
    }
    Ok(DeviceMapping {
        source: source.into(),
        target: target.into(),
        permissions: permissions.map(str::to_string),
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EnvFileEntry {
    Short(String),
    Long(EnvFile),
}

pub(super) fn env_files<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EnvFile>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<EnvFileEntry>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(p)) => vec![EnvFile {
            path: p,
            required: true,
            format: None,
        }],
        Some(OneOrMany::Many(v)) => v
            .into_iter()
            .map(|e| match e {
                EnvFileEntry::Short(p) => EnvFile {
                    path: p,
                    required: true,
                    format: None,
                },
                EnvFileEntry::Long(f) => f,
            })
            .collect(),
    })
}

/// `extra_hosts`: `["host:ip", "host=ip"]` or `{host: ip | [ips]}`.
pub(super) fn extra_hosts<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(items)) => {
            for i in items {
                let s = i
                    .as_str()
                    .ok_or_else(|| de::Error::custom("extra_hosts entries must be strings"))?;
                let (h, ip) = s
                    .split_once('=')
                    .or_else(|| s.split_once(':'))
                    .ok_or_else(|| {
                        de::Error::custom(format!("invalid extra host {s:?}: expected HOST:IP"))
                    })?;
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                out.entry(h.to_string()).or_default().push(ip.to_string());
            }
        }
        Some(serde_json::Value::Object(m)) => {
            for (h, v) in m {
                match v {
                    serde_json::Value::Array(ips) => out
                        .entry(h)
                        .or_default()
                        .extend(ips.iter().map(crate::compose::merge::scalar_text)),
                    v => out
                        .entry(h)
                        .or_default()
                        .push(crate::compose::merge::scalar_text(&v)),
                }
            }
        }
        Some(v) => return Err(de::Error::custom(format!("invalid extra_hosts {v}"))),
    }
    Ok(out)
}

pub(super) fn ulimits<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Ulimit>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Single(Scalar),
        Pair { soft: Scalar, hard: Scalar },
    }
    let num = |s: Scalar| -> Result<i64, D::Error> {
        let t = s.text();
        t.parse()
            .map_err(|_| de::Error::custom(format!("invalid ulimit {t:?}")))
    };
    let mut out = BTreeMap::new();
    for (k, v) in Option::<BTreeMap<String, Entry>>::deserialize(d)?.unwrap_or_default() {
        let u = match v {
            Entry::Single(s) => {
                let n = num(s)?;
                Ulimit { soft: n, hard: n }
            }
            Entry::Pair { soft, hard } => Ulimit {
                soft: num(soft)?,
                hard: num(hard)?,
            },
        };
        out.insert(k, u);
    }
    Ok(out)
}

/// `healthcheck.test`: a string means `CMD-SHELL string`.
pub(super) fn healthcheck_test<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    Ok(match Option::<StringOrList>::deserialize(d)? {
        None => None,
        Some(StringOrList::List(v)) => Some(v),
        Some(StringOrList::String(s)) => Some(vec!["CMD-SHELL".into(), s]),
    })
}

// ---- short-syntax deserializers -------------------------------------------------------------

/// Top-level `networks:`/`volumes:` entries may be empty (`site:`), meaning all defaults.
pub(super) fn map_of_optional<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
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

pub(super) fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
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
pub(super) fn mapping_or_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    Ok(match Option::<MapOrList>::deserialize(d)? {
        None => BTreeMap::new(),
        Some(MapOrList::Map(m)) => m
            .into_iter()
            .map(|(k, v)| (k, v.map(Scalar::text)))
            .collect(),
        Some(MapOrList::List(l)) => {
            let mut out = BTreeMap::new();
            for e in l {
                let (k, v) = match e.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (e, None),
                };
                if k.trim() != k || k.is_empty() {
                    return Err(de::Error::custom(format!(
                        "variable {k:?} is declared with surrounding spaces or is empty"
                    )));
                }
                out.insert(k, v);
            }
            out
        }
    })
}

pub(super) fn labels<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
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

pub(super) fn ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServicePort>, D::Error> {
    let entries = Option::<Vec<PortEntry>>::deserialize(d)?.unwrap_or_default();
    let mut out = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        match e {
            PortEntry::Long(p) => out.push(p),
            PortEntry::Short(s) => out.extend(parse_port(&s.text()).map_err(|e| item_error(i, e))?),
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
    // u32: a full range 0-65535 has 65536 ports.
    let count = u32::from(t1) - u32::from(t0) + 1;
    if let Some((h0, h1)) = host
        && count > 1
        && u32::from(h1) - u32::from(h0) + 1 != count
    {
        return Err(bad("host and container ranges differ in length"));
    }
    Ok((0..count)
        .map(|i| ServicePort {
            // Both stay within their u16 ranges: i < count and the ranges have equal length.
            target: (u32::from(t0) + i) as u16,
            published: host.map(|(h0, h1)| {
                if count == 1 && h1 > h0 {
                    format!("{h0}-{h1}")
                } else {
                    (u32::from(h0) + i).to_string()
                }
            }),
            host_ip: host_ip.clone().filter(|s| !s.is_empty()),
            protocol: protocol.clone(),
            mode: Some("ingress".into()),
            name: None,
            app_protocol: None,
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VolumeEntry {
    Long(Box<ServiceVolume>),
    Short(String),
}

pub(super) fn service_volumes<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<ServiceVolume>, D::Error> {
    let entries = Option::<Vec<VolumeEntry>>::deserialize(d)?.unwrap_or_default();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| match e {
            VolumeEntry::Long(v) => Ok(*v),
            VolumeEntry::Short(s) => parse_volume(&s).map_err(|e| item_error(i, e)),
        })
        .collect()
}

/// Parses the short volume syntax `[SOURCE:]TARGET[:MODE]`; MODE is a comma list of `ro`, `rw`,
/// `z`, `Z`, `nocopy`, `consistent|cached|delegated` and bind propagation modes.
pub fn parse_volume(spec: &str) -> Result<ServiceVolume, String> {
    let bad = |why: &str| format!("invalid volume {spec:?}: {why}");
    if spec.is_empty() {
        return Err(bad("empty"));
    }
    let parts: Vec<&str> = split_volume(spec);
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err(bad("too many colons")),
    };
    if target.is_empty() {
        return Err(bad("empty container path"));
    }
    if !target.starts_with('/') && !is_windows_path(target) {
        return Err(bad(&format!(
            "the container path {target:?} must be absolute"
        )));
    }
    let source = source.filter(|s| !s.is_empty());
    let kind = match source {
        None => VolumeType::Volume,
        Some(s)
            if s.starts_with('.')
                || s.starts_with('/')
                || s.starts_with('~')
                || is_windows_path(s) =>
        {
            VolumeType::Bind
        }
        Some(_) => VolumeType::Volume,
    };
    let mut v = ServiceVolume {
        kind,
        source: source.map(str::to_string),
        target: target.to_string(),
        read_only: false,
        consistency: None,
        bind: None,
        volume: None,
        tmpfs: None,
        image: None,
    };
    for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => v.read_only = true,
            "rw" => v.read_only = false,
            "z" | "Z" => {
                v.bind.get_or_insert_with(BindOptions::short).selinux = Some(opt.into());
            }
            "nocopy" => v.volume.get_or_insert_with(Default::default).nocopy = true,
            "consistent" | "cached" | "delegated" => v.consistency = Some(opt.into()),
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                v.bind.get_or_insert_with(BindOptions::short).propagation = Some(opt.into());
            }
            _ => return Err(bad(&format!("unknown mode {opt:?}"))),
        }
    }
    if v.kind == VolumeType::Bind {
        v.bind.get_or_insert_with(BindOptions::short);
    }
    Ok(v)
}

impl BindOptions {
    /// Short-syntax binds create a missing host path.
    fn short() -> Self {
        BindOptions {
            create_host_path: true,
            ..Default::default()
        }
    }
}

pub(super) fn is_windows_path(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[1] == b':'
        && (b.len() == 2 || b[2] == b'\\' || b[2] == b'/')
}

/// Splits on `:` but keeps a Windows drive letter (`C:\x`) with its path.
pub(super) fn split_volume(spec: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let b = spec.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b':' {
            let drive = i == start + 1
                && b[start].is_ascii_alphabetic()
                && matches!(b.get(i + 1), Some(b'\\' | b'/'));
            if !drive {
                out.push(&spec[start..i]);
                start = i + 1;
            }
        }
        i += 1;
    }
    out.push(&spec[start..]);
    out
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DependsOnEntry {
    List(Vec<String>),
    Map(BTreeMap<String, Option<DependsOn>>),
}

pub(super) fn depends_on<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, DependsOn>, D::Error> {
    Ok(match Option::<DependsOnEntry>::deserialize(d)? {
        None => BTreeMap::new(),
        Some(DependsOnEntry::Map(m)) => m
            .into_iter()
            .map(|(k, v)| {
                let v = v.unwrap_or(DependsOn {
                    condition: service_started(),
                    required: true,
                    restart: false,
                });
                (k, v)
            })
            .collect(),
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

pub(super) fn service_networks<'de, D: Deserializer<'de>>(
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
        // Regression: a full range overflowed u16 arithmetic.
        assert_eq!(parse_port("0-65535").unwrap().len(), 65536);
        assert!(parse_port("1-65535:0-65535").is_err());
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
