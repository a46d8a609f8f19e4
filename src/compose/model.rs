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
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, FileObject>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, FileObject>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, serde_json::Value>,
    /// Services whose profiles are not active; not started, not orphans.
    #[serde(skip)]
    pub disabled_services: BTreeMap<String, Service>,
    /// The variables used for interpolation (OS environment plus `.env` files).
    #[serde(skip)]
    pub environment: BTreeMap<String, String>,
    /// The active profiles.
    #[serde(skip)]
    pub profiles: Vec<String>,
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
    #[serde(default, deserialize_with = "map_of_optional")]
    pub secrets: BTreeMap<String, FileObject>,
    #[serde(default, deserialize_with = "map_of_optional")]
    pub configs: BTreeMap<String, FileObject>,
    #[serde(default)]
    pub models: BTreeMap<String, serde_json::Value>,
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

    // ---- every other key of the compose specification -----------------------------------
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "build"
    )]
    pub build: Option<BuildConfig>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_bool"
    )]
    pub attach: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blkio_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "file_refs"
    )]
    pub configs: Vec<FileRef>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub cpu_count: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_f64"
    )]
    pub cpu_percent: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub cpu_period: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub cpu_quota: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub cpu_rt_period: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub cpu_rt_runtime: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub cpu_shares: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_f64"
    )]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_spec: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub develop: Option<Develop>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "devices"
    )]
    pub devices: Vec<DeviceMapping>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub dns_search: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "env_files"
    )]
    pub env_file: Vec<EnvFile>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "scalar_list"
    )]
    pub expose: Vec<String>,
    /// Resolved by the loader; kept only when loading with extends left unresolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_links: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "extra_hosts"
    )]
    pub extra_hosts: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<serde_json::Value>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "scalar_list"
    )]
    pub group_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_bool"
    )]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub label_file: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub mem_limit: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub mem_reservation: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub mem_swappiness: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub memswap_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_bool"
    )]
    pub oom_kill_disable: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub oom_score_adj: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub pids_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_start: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_start: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_stop: Vec<Hook>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_refresh_after: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub scale: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "file_refs"
    )]
    pub secrets: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub shm_size: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub stdin_open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_opt: Option<serde_json::Value>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub sysctls: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub tmpfs: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub tty: bool,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "ulimits"
    )]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub use_api_socket: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
}

/// A published port in long form.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    pub target: u16,
    /// A port (`"8080"`) or a range (`"8000-8010"`); `None` means an ephemeral port.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
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
    Npipe,
    Image,
    Cluster,
}

/// A mount in long form. For `bind`, `source` is an absolute host path once loaded.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct ServiceVolume {
    #[serde(rename = "type")]
    pub kind: VolumeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageOptions>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw_priority: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The name on the host; `<project>_<key>` unless set or external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "external"
    )]
    pub external: bool,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub internal: bool,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub attachable: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_bool"
    )]
    pub enable_ipv4: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_bool"
    )]
    pub enable_ipv6: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
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
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "external"
    )]
    pub external: bool,
    #[serde(
        default,
        deserialize_with = "labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}
/// `build:` in long form (the short form is the context path).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct BuildConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "mapping_or_list"
    )]
    pub args: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_to: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub no_cache: bool,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub no_cache_filter: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub additional_contexts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub pull: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub shm_size: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "extra_hosts"
    )]
    pub extra_hosts: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub privileged: bool,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "file_refs"
    )]
    pub secrets: Vec<FileRef>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "mapping_or_list"
    )]
    pub ssh: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "ulimits"
    )]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<serde_json::Value>,
}

/// A service's reference to a secret or config, in long form.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct FileRef {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub uid: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub gid: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_mode"
    )]
    pub mode: Option<u32>,
}

/// A top-level secret or config.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct FileObject {
    /// The name on the host; `<project>_<key>` unless set or external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A file path, absolute once loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "external"
    )]
    pub external: bool,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_driver: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Deploy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub replicas: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<ResourceLimits>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ResourceLimits {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_f64"
    )]
    pub cpus: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub memory: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub pids: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct RestartPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub max_attempts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Develop {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<WatchRule>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct WatchRule {
    pub path: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub ignore: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Hook>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub initial_sync: bool,
}

/// `post_start`, `pre_stop`, `pre_start` hooks and `develop.watch[].exec`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Hook {
    #[serde(
        default,
        deserialize_with = "command",
        skip_serializing_if = "Option::is_none"
    )]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "mapping_or_list"
    )]
    pub environment: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct DeviceMapping {
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct EnvFile {
    /// Absolute once loaded.
    pub path: String,
    #[serde(default = "yes", deserialize_with = "flex_bool")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Healthcheck {
    #[serde(
        default,
        deserialize_with = "healthcheck_test",
        skip_serializing_if = "Option::is_none"
    )]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_i64"
    )]
    pub retries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub disable: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub options: BTreeMap<String, String>,
}

/// A ulimit; the short form (one number) sets both.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    #[serde(default = "yes", deserialize_with = "flex_bool")]
    pub create_host_path: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct VolumeOptions {
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub nocopy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct TmpfsOptions {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub size: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_mode"
    )]
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct ImageOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Ipam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct IpamPool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "labels"
    )]
    pub aux_addresses: BTreeMap<String, String>,
}

/// An error about item `i` of a list that a custom deserializer read whole; the loader turns the
/// `@i@` prefix back into `[i]` in the key path (see `normalize::typed`).
fn item_error<E: de::Error>(i: usize, msg: String) -> E {
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

fn flex_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_bool(d)?.unwrap_or(false))
}

fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
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
fn external<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(b),
        Some(serde_json::Value::String(s)) => parse_bool(&s)
            .ok_or_else(|| de::Error::custom(format!("expected a boolean, got {s:?}"))),
        Some(serde_json::Value::Object(_)) => Ok(true),
        Some(v) => Err(de::Error::custom(format!("expected a boolean, got {v}"))),
    }
}

fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
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

fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
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
fn opt_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(Scalar::text))
}

/// A file mode: a number (YAML `0o440` or `288`) or an octal string (`"0440"`).
fn opt_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
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

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<StringOrList>::deserialize(d)? {
        None => Vec::new(),
        Some(StringOrList::String(s)) => vec![s],
        Some(StringOrList::List(l)) => l,
    })
}

/// A list of scalars as text (`expose: [80, "443/tcp"]`).
fn scalar_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
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

fn build<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BuildConfig>, D::Error> {
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

fn file_refs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FileRef>, D::Error> {
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

fn devices<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DeviceMapping>, D::Error> {
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

fn env_files<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EnvFile>, D::Error> {
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
fn extra_hosts<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
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

fn ulimits<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Ulimit>, D::Error> {
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
fn healthcheck_test<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(match Option::<StringOrList>::deserialize(d)? {
        None => None,
        Some(StringOrList::List(v)) => Some(v),
        Some(StringOrList::String(s)) => Some(vec!["CMD-SHELL".into(), s]),
    })
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

fn service_volumes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServiceVolume>, D::Error> {
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

fn is_windows_path(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[1] == b':'
        && (b.len() == 2 || b[2] == b'\\' || b[2] == b'/')
}

/// Splits on `:` but keeps a Windows drive letter (`C:\x`) with its path.
fn split_volume(spec: &str) -> Vec<&str> {
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

fn depends_on<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, DependsOn>, D::Error> {
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
