//! Project networks: a record per network (`<data>/networks/<name>.json`), a subnet from the
//! pool, an address allocator per network, and the bridge itself.
use crate::net::{AddressAllocator, BridgeNetwork, NetError, NetHost, SubnetStore};
use crate::state::{Paths, StateError, read_json, short_hash, write_json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    pub network: BridgeNetwork,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("network {name}: {source}")]
    Net { name: String, source: NetError },
    #[error("network {name}: no free subnet left in the address pool")]
    NoSubnet { name: String },
}

fn record_path(paths: &Paths, name: &str) -> PathBuf {
    paths.networks().join(format!("{name}.json"))
}

fn subnets(paths: &Paths) -> SubnetStore {
    SubnetStore::new(paths.networks().join("subnets.json"))
}

pub fn allocator(paths: &Paths, n: &BridgeNetwork) -> AddressAllocator {
    AddressAllocator::new(
        paths.networks().join(format!("{}.addresses.json", n.name)),
        n.subnet,
        n.gateway,
    )
}

pub fn load(paths: &Paths, name: &str) -> Result<Option<NetworkRecord>, StateError> {
    read_json(&record_path(paths, name))
}

pub fn list(paths: &Paths) -> Result<Vec<NetworkRecord>, StateError> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(paths.networks()) {
        for e in entries.flatten() {
            let p = e.path();
            let is_record = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.ends_with(".json") && !n.contains(".addresses.") && n != "subnets.json"
            });
            if is_record && let Some(r) = read_json::<NetworkRecord>(&p)? {
                out.push(r);
            }
        }
    }
    out.sort_by(|a, b| a.network.name.cmp(&b.network.name));
    Ok(out)
}

/// Makes the network exist (record first, so a crash is recoverable) and returns it.
pub async fn ensure(
    paths: &Paths,
    host: &NetHost,
    name: &str,
    internal: bool,
    labels: &BTreeMap<String, String>,
) -> Result<(BridgeNetwork, bool), NetworkError> {
    let net_err = |source| NetworkError::Net {
        name: name.to_string(),
        source,
    };
    let (network, created) = match load(paths, name)? {
        Some(r) => (r.network, false),
        None => {
            let routes = crate::net::host_routes().await.map_err(net_err)?;
            let pool = crate::net::default_pool().map_err(net_err)?;
            let subnet = subnets(paths)
                .allocate(name, &pool, 24, &routes)
                .map_err(net_err)?;
            let gateway = subnet
                .hosts()
                .next()
                .ok_or_else(|| NetworkError::NoSubnet { name: name.into() })?;
            let bridge = format!(
                "br-{}",
                short_hash(format!("{}/{name}", paths.tag()).as_bytes(), 12)
            );
            let network = BridgeNetwork {
                name: name.to_string(),
                bridge,
                subnet,
                gateway,
                internal,
            };
            write_json(
                &record_path(paths, name),
                &NetworkRecord {
                    network: network.clone(),
                    labels: labels.clone(),
                },
            )?;
            (network, true)
        }
    };
    host.ensure_network(&network).await.map_err(net_err)?;
    Ok((network, created))
}

/// Removes the bridge, its firewall elements, its addresses and its record. Idempotent.
pub async fn remove(paths: &Paths, host: &NetHost, n: &BridgeNetwork) -> Result<(), NetworkError> {
    let net_err = |source| NetworkError::Net {
        name: n.name.clone(),
        source,
    };
    host.remove_network(n).await.map_err(net_err)?;
    subnets(paths).release(&n.name).map_err(net_err)?;
    for p in [
        paths.networks().join(format!("{}.addresses.json", n.name)),
        paths
            .networks()
            .join(format!("{}.addresses.json.lock", n.name)),
        record_path(paths, &n.name),
    ] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StateError::Io { path: p, source }.into()),
        }
    }
    if list(paths)?.is_empty() {
        host.remove_table().map_err(net_err)?;
    }
    Ok(())
}
