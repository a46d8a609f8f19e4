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
    Net { name: String, source: Box<NetError> },
    #[error("network {name}: no free subnet left in the address pool")]
    NoSubnet { name: String },
    #[error("network {name}: {message}")]
    Invalid { name: String, message: String },
}

/// What a network should be, beyond its name: compose `internal`, `ipam.config[0]` and the
/// bridge `driver_opts` berth supports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkSpec {
    pub internal: bool,
    pub subnet: Option<ipnet::Ipv4Net>,
    pub gateway: Option<std::net::Ipv4Addr>,
    pub ip_range: Option<ipnet::Ipv4Net>,
    /// `com.docker.network.driver.mtu`
    pub mtu: Option<u32>,
    /// `com.docker.network.bridge.name`
    pub bridge: Option<String>,
    /// `enable_ipv6`
    pub ipv6: bool,
    /// The IPv6 entry of `ipam.config`; a ULA /64 is picked when IPv6 is on without one.
    pub subnet6: Option<ipnet::Ipv6Net>,
    pub gateway6: Option<std::net::Ipv6Addr>,
}

impl NetworkSpec {
    /// From a compose network; `name` is its host name, for errors.
    pub fn from_compose(name: &str, net: &crate::compose::Network) -> Result<Self, NetworkError> {
        let invalid = |message: String| NetworkError::Invalid {
            name: name.to_string(),
            message,
        };
        if let Some(d) = net.driver.as_deref()
            && d != "bridge"
        {
            return Err(invalid(format!(
                "driver {d:?} is not supported (berth has the \"bridge\" driver only)"
            )));
        }
        let mut spec = NetworkSpec {
            internal: net.internal,
            ipv6: net.enable_ipv6 == Some(true),
            ..Default::default()
        };
        for (k, v) in &net.driver_opts {
            match k.as_str() {
                "com.docker.network.driver.mtu" => {
                    spec.mtu = Some(
                        v.parse()
                            .ok()
                            .filter(|m| (68..=65535).contains(m))
                            .ok_or_else(|| invalid(format!("MTU {v:?} is not 68 to 65535")))?,
                    )
                }
                "com.docker.network.bridge.name" => {
                    crate::net::check_ifname(v).map_err(|e| invalid(e.to_string()))?;
                    spec.bridge = Some(v.clone());
                }
                _ => {
                    return Err(invalid(format!(
                        "driver option {k:?} is not supported (com.docker.network.driver.mtu and com.docker.network.bridge.name are)"
                    )));
                }
            }
        }
        let pools = net.ipam.as_ref().map_or(&[][..], |i| i.config.as_slice());
        let is_v6 =
            |p: &&crate::compose::IpamPool| p.subnet.as_deref().is_some_and(|s| s.contains(':'));
        if let Some(pool) = pools.iter().find(is_v6) {
            let subnet = pool.subnet.as_deref().unwrap_or_default();
            let net6: ipnet::Ipv6Net = subnet
                .parse()
                .map_err(|_| invalid(format!("subnet {subnet:?} is not an IPv6 subnet")))?;
            let net6 = net6.trunc();
            if !spec.ipv6 {
                return Err(invalid(format!(
                    "IPv6 subnet {net6} given but IPv6 is off (hint: set enable_ipv6: true)"
                )));
            }
            if net6.prefix_len() > 120 {
                return Err(invalid(format!("IPv6 subnet {net6} is too small")));
            }
            spec.subnet6 = Some(net6);
            spec.gateway6 = pool
                .gateway
                .as_deref()
                .map(|g| {
                    g.parse::<std::net::Ipv6Addr>()
                        .ok()
                        .filter(|g| net6.contains(g))
                        .ok_or_else(|| {
                            invalid(format!("gateway {g:?} is not an IPv6 address in {net6}"))
                        })
                })
                .transpose()?;
        }
        if let Some(pool) = pools.iter().find(|p| !is_v6(p)) {
            let parse_net = |what: &str, v: &str| -> Result<ipnet::Ipv4Net, NetworkError> {
                v.parse::<ipnet::Ipv4Net>()
                    .map(|n| n.trunc())
                    .map_err(|_| invalid(format!("{what} {v:?} is not an IPv4 subnet")))
            };
            spec.subnet = pool
                .subnet
                .as_deref()
                .map(|v| parse_net("subnet", v))
                .transpose()?;
            spec.ip_range = pool
                .ip_range
                .as_deref()
                .map(|v| parse_net("ip_range", v))
                .transpose()?;
            spec.gateway = pool
                .gateway
                .as_deref()
                .map(|v| {
                    v.parse()
                        .map_err(|_| invalid(format!("gateway {v:?} is not an IPv4 address")))
                })
                .transpose()?;
            let Some(subnet) = spec.subnet else {
                if spec.ip_range.is_some() || spec.gateway.is_some() {
                    return Err(invalid("ip_range and gateway need a subnet".into()));
                }
                return Ok(spec);
            };
            if let Some(r) = spec.ip_range
                && !subnet.contains(&r)
            {
                return Err(invalid(format!(
                    "ip_range {r} is not inside subnet {subnet}"
                )));
            }
            if let Some(g) = spec.gateway
                && !subnet.contains(&g)
            {
                return Err(invalid(format!(
                    "gateway {g} is not inside subnet {subnet}"
                )));
            }
        }
        Ok(spec)
    }
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
    .with_range(n.ip_range)
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

/// Makes the network exist (record first, so a crash is recoverable) and returns it. An existing
/// record is kept as it is.
pub async fn ensure(
    paths: &Paths,
    host: &NetHost,
    name: &str,
    spec: &NetworkSpec,
    labels: &BTreeMap<String, String>,
) -> Result<(BridgeNetwork, bool), NetworkError> {
    let net_err = |source| NetworkError::Net {
        name: name.to_string(),
        source: Box::new(source),
    };
    let (network, created) = match load(paths, name)? {
        Some(r) => (r.network, false),
        None => {
            // IPv6 first: a refusal must not leave an IPv4 subnet recorded.
            let subnet6 = match (spec.ipv6, spec.subnet6) {
                (false, _) => None,
                (true, Some(net6)) => {
                    if let Some(other) = list(paths)?.into_iter().find(|r| {
                        r.network.name != name
                            && r.network
                                .subnet6
                                .is_some_and(|s| s.contains(&net6) || net6.contains(&s))
                    }) {
                        return Err(NetworkError::Invalid {
                            name: name.into(),
                            message: format!(
                                "IPv6 subnet {net6} overlaps {} of network {}",
                                other.network.subnet6.expect("checked above"),
                                other.network.name
                            ),
                        });
                    }
                    Some(net6)
                }
                (true, None) => Some(ula_subnet(paths, name)?),
            };
            let subnet = match spec.subnet {
                Some(subnet) => {
                    let taken = subnets(paths).list().map_err(net_err)?;
                    if let Some((other, s)) = taken.iter().find(|(n, s)| {
                        n.as_str() != name && (s.contains(&subnet) || subnet.contains(*s))
                    }) {
                        return Err(NetworkError::Invalid {
                            name: name.into(),
                            message: format!("subnet {subnet} overlaps {s} of network {other}"),
                        });
                    }
                    subnets(paths).record(name, subnet).map_err(net_err)?;
                    subnet
                }
                None => {
                    let routes = crate::net::host_routes().await.map_err(net_err)?;
                    let pool = crate::net::default_pool().map_err(net_err)?;
                    subnets(paths)
                        .allocate(name, &pool, 24, &routes)
                        .map_err(net_err)?
                }
            };
            let gateway = match spec.gateway {
                Some(g) => g,
                None => subnet
                    .hosts()
                    .next()
                    .ok_or_else(|| NetworkError::NoSubnet { name: name.into() })?,
            };
            let bridge = spec.bridge.clone().unwrap_or_else(|| {
                format!(
                    "br-{}",
                    short_hash(format!("{}/{name}", paths.tag()).as_bytes(), 12)
                )
            });
            let gateway6 = subnet6.map(|net6| {
                spec.gateway6
                    .unwrap_or_else(|| std::net::Ipv6Addr::from(u128::from(net6.network()) | 1))
            });
            let network = BridgeNetwork {
                name: name.to_string(),
                bridge,
                subnet,
                gateway,
                internal: spec.internal,
                mtu: spec.mtu,
                ip_range: spec.ip_range,
                subnet6,
                gateway6,
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

/// A /64 for an IPv6 network with no subnet given, as Docker does: from a ULA prefix
/// `fdXX:XXXX:XXXX::/48` whose global id is derived from the state root, the subnet id from
/// the network's name, moved on past any /64 another network of the root has.
fn ula_subnet(paths: &Paths, name: &str) -> Result<ipnet::Ipv6Net, NetworkError> {
    let global = u64::from_str_radix(&short_hash(paths.tag().as_bytes(), 10), 16)
        .expect("hex digits")
        | 1 << 39; // never fd00::/48, which hosts often use
    let taken: Vec<ipnet::Ipv6Net> = list(paths)?
        .into_iter()
        .filter(|r| r.network.name != name)
        .filter_map(|r| r.network.subnet6)
        .collect();
    let mut id = u16::from_str_radix(&short_hash(name.as_bytes(), 4), 16).expect("hex digits");
    for _ in 0..=u16::MAX {
        let bits = (0xfdu128 << 120) | (u128::from(global) << 80) | (u128::from(id) << 64);
        let net = ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(bits), 64).expect("64 is valid");
        if !taken.iter().any(|t| t.contains(&net) || net.contains(t)) {
            return Ok(net);
        }
        id = id.wrapping_add(1);
    }
    Err(NetworkError::NoSubnet { name: name.into() })
}

/// Removes the bridge, its firewall elements, its addresses and its record. Idempotent.
pub async fn remove(paths: &Paths, host: &NetHost, n: &BridgeNetwork) -> Result<(), NetworkError> {
    let net_err = |source| NetworkError::Net {
        name: n.name.clone(),
        source: Box::new(source),
    };
    // The root's last network takes the whole nft table with it, in the same step.
    let last = list(paths)?.iter().all(|r| r.network.name == n.name);
    host.remove_network_then(n, last).await.map_err(net_err)?;
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
    // Another network's removal at the same time may have left the table to us.
    if !last && list(paths)?.is_empty() {
        host.remove_table().map_err(net_err)?;
    }
    Ok(())
}

/// A container's IPv6 address on `n` (None when `n` has no IPv6): `want` (compose
/// `ipv6_address`, `network connect --ip6`) if it is in the subnet and no other container of
/// the state root has it, else the one derived from its IPv4 address, moved on past any taken.
pub fn address6(
    paths: &Paths,
    n: &BridgeNetwork,
    owner: &str,
    ip: std::net::Ipv4Addr,
    want: Option<std::net::Ipv6Addr>,
) -> anyhow::Result<Option<std::net::Ipv6Addr>> {
    let Some(net6) = n.subnet6 else {
        if let Some(a) = want {
            anyhow::bail!(
                "IPv6 address {a} given, but network {} has no IPv6 (hint: enable_ipv6: true)",
                n.name
            );
        }
        return Ok(None);
    };
    let taken: std::collections::BTreeSet<std::net::Ipv6Addr> =
        crate::engine::container::list(paths)?
            .into_iter()
            .filter(|c| c.id != owner)
            .flat_map(|c| c.networks)
            .filter(|a| a.network == n.name)
            .filter_map(|a| a.ip6)
            .chain(n.gateway6)
            .collect();
    if let Some(a) = want {
        if !net6.contains(&a) || a == net6.network() {
            anyhow::bail!(
                "IPv6 address {a} is not in subnet {net6} of network {}",
                n.name
            );
        }
        if taken.contains(&a) {
            anyhow::bail!(
                "IPv6 address {a} on network {}: address already in use",
                n.name
            );
        }
        return Ok(Some(a));
    }
    let first = n.address6_for(ip).expect("the network has IPv6");
    let step = 1u128 << 32;
    let found = (0..256u128)
        .map(|i| std::net::Ipv6Addr::from(u128::from(first) + i * step))
        .find(|a| net6.contains(a) && !taken.contains(a));
    found
        .map(Some)
        .ok_or_else(|| anyhow::anyhow!("no free IPv6 address left in {net6} of network {}", n.name))
}

/// Joins a (running or stopped) container to a network: an address, a veth into its
/// namespace, and its record updated, which its resolver and its peers' read at their next
/// query. `berth network connect`.
pub async fn connect(
    paths: &Paths,
    host: &NetHost,
    rec: &mut crate::engine::container::ContainerRecord,
    n: &BridgeNetwork,
    (ip, ip6): (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>),
    aliases: &[String],
) -> anyhow::Result<()> {
    use anyhow::Context;
    if rec.networks.iter().any(|a| a.network == n.name) {
        anyhow::bail!(
            "container {} is already connected to network {}",
            rec.name,
            n.name
        );
    }
    let alloc = allocator(paths, n);
    let static_ip = ip;
    let ip = match ip {
        Some(ip) => {
            alloc.allocate_static(&rec.id, ip)?;
            ip
        }
        None => alloc.allocate(&rec.id)?,
    };
    let mut names: Vec<String> = rec.service().map(String::from).into_iter().collect();
    names.extend(aliases.iter().cloned());
    let used: Vec<&str> = rec.networks.iter().map(|a| a.ifname.as_str()).collect();
    let ifname = (0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !used.contains(&n.as_str()))
        .expect("an unused ethN exists");
    let att = crate::engine::container::NetworkAttachment {
        network: n.name.clone(),
        ip,
        ip6: match address6(paths, n, &rec.id, ip, ip6) {
            Ok(a) => a,
            Err(e) => {
                let _ = alloc.release(&rec.id);
                return Err(e);
            }
        },
        host_ifname: format!(
            "vb{}",
            short_hash(format!("{}{}", rec.id, n.name).as_bytes(), 11)
        ),
        ifname,
        aliases: names,
        mac: Some(crate::net::format_mac(crate::net::derived_mac(ip))),
        static_ip,
        static_ip6: ip6,
    };
    rec.networks.push(att.clone());
    rec.save(paths)?;
    touch_containers(paths);
    host.ensure_network(n).await?;
    host.attach_with_mac(
        &paths.netns(&rec.id),
        n,
        (ip, att.ip6),
        &att.host_ifname,
        &att.ifname,
        None,
    )
    .await
    .with_context(|| format!("connecting {} to {}", rec.name, n.name))?;
    Ok(())
}

/// Takes a container off a network: the veth goes, the address is released, the record no
/// longer names the network. `berth network disconnect`.
pub async fn disconnect(
    paths: &Paths,
    host: &NetHost,
    rec: &mut crate::engine::container::ContainerRecord,
    network: &str,
) -> anyhow::Result<()> {
    let Some(i) = rec.networks.iter().position(|a| a.network == network) else {
        anyhow::bail!(
            "container {} is not connected to network {network}",
            rec.name
        );
    };
    let att = rec.networks.remove(i);
    host.detach(&att.host_ifname).await?;
    if let Some(r) = load(paths, network)? {
        allocator(paths, &r.network).release(&rec.id)?;
    }
    rec.save(paths)?;
    touch_containers(paths);
    Ok(())
}

/// The resolvers re-read the container records when their directory's mtime changes: a new
/// attachment is answered at the next query, not after the resolvers' cache expires.
fn touch_containers(paths: &Paths) {
    if let Ok(d) = std::fs::File::open(paths.containers()) {
        let _ = d.set_modified(std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{Ipam, IpamPool, Network};

    fn with_pool(subnet: &str, gateway: Option<&str>, range: Option<&str>) -> Network {
        Network {
            ipam: Some(Ipam {
                config: vec![IpamPool {
                    subnet: Some(subnet.into()),
                    gateway: gateway.map(Into::into),
                    ip_range: range.map(Into::into),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn compose_network_options() {
        let n = with_pool("10.9.0.0/24", Some("10.9.0.254"), Some("10.9.0.128/25"));
        let s = NetworkSpec::from_compose("p_n", &n).unwrap();
        assert_eq!(s.subnet, Some("10.9.0.0/24".parse().unwrap()));
        assert_eq!(s.gateway, Some("10.9.0.254".parse().unwrap()));
        assert_eq!(s.ip_range, Some("10.9.0.128/25".parse().unwrap()));
        let mut n = Network::default();
        n.driver_opts
            .insert("com.docker.network.driver.mtu".into(), "1400".into());
        n.driver_opts
            .insert("com.docker.network.bridge.name".into(), "br-mine".into());
        let s = NetworkSpec::from_compose("p_n", &n).unwrap();
        assert_eq!((s.mtu, s.bridge.as_deref()), (Some(1400), Some("br-mine")));
    }

    #[test]
    fn bad_network_options_say_what_is_wrong() {
        let err = |n: Network| {
            NetworkSpec::from_compose("p_n", &n)
                .unwrap_err()
                .to_string()
        };
        let overlay = Network {
            driver: Some("overlay".into()),
            ..Default::default()
        };
        assert!(err(overlay).contains("driver \"overlay\" is not supported"));
        assert!(err(with_pool("10.9.0.0/24", Some("10.8.0.1"), None)).contains("not inside"));
        assert!(err(with_pool("10.9.0.0/24", None, Some("10.8.0.0/25"))).contains("not inside"));
        assert!(err(with_pool("nope", None, None)).contains("not an IPv4 subnet"));
        let mut n = Network::default();
        n.driver_opts
            .insert("com.docker.network.driver.mtu".into(), "9".into());
        assert!(err(n).contains("MTU"));
        let mut n = Network::default();
        n.driver_opts.insert("foo".into(), "1".into());
        assert!(err(n).contains("driver option \"foo\" is not supported"));
    }

    #[test]
    fn dynamic_addresses_come_from_the_ip_range() {
        let dir = tempfile::tempdir().unwrap();
        let a = AddressAllocator::new(
            dir.path().join("a.json"),
            "10.9.0.0/24".parse().unwrap(),
            "10.9.0.1".parse().unwrap(),
        )
        .with_range(Some("10.9.0.200/29".parse().unwrap()));
        let ip = a.allocate("x").unwrap();
        assert_eq!(ip, "10.9.0.201".parse::<std::net::Ipv4Addr>().unwrap());
        // Static addresses may be anywhere in the subnet.
        a.allocate_static("y", "10.9.0.5".parse().unwrap()).unwrap();
        for i in 0..5 {
            a.allocate(&format!("z{i}")).unwrap();
        }
        assert!(a.allocate("full").is_err(), "a /29 has 6 host addresses");
    }
}
