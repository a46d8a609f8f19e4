//! IP address management: which subnet a network gets and which address a container gets.
//!
//! The choices are pure functions ([`pick_subnet`], [`next_free_address`]); persistence is a
//! small JSON file per store, rewritten atomically under an exclusive lock on a sidecar
//! `<file>.lock`, so two berth processes never hand out the same subnet or address.
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::NetError;

/// Environment variable overriding the subnet pool: comma separated IPv4 CIDRs, split into /24s.
pub const POOL_ENV: &str = "BERTH_SUBNET_POOL";

/// Docker's default pool: 172.17.0.0/16 … 172.31.0.0/16, then 192.168.0.0/16 split into /20s.
/// `BERTH_SUBNET_POOL` replaces it (each entry split into /24s); an invalid value is an error.
pub fn default_pool() -> Result<Vec<Ipv4Net>, NetError> {
    match std::env::var(POOL_ENV) {
        Ok(value) if !value.trim().is_empty() => parse_pool(&value),
        _ => Ok(docker_pool()),
    }
}

fn docker_pool() -> Vec<Ipv4Net> {
    let mut pool: Vec<Ipv4Net> = (17..=31)
        .map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("16 is a valid prefix"))
        .collect();
    let big = Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16).expect("16 is a valid prefix");
    pool.extend(big.subnets(20).expect("20 >= 16"));
    pool
}

/// Parses a `BERTH_SUBNET_POOL` value: `10.213.0.0/16,10.214.0.0/24` → its /24s, in order.
pub fn parse_pool(value: &str) -> Result<Vec<Ipv4Net>, NetError> {
    let mut pool = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let net: Ipv4Net = part.parse().map_err(|_| NetError::InvalidPool {
            value: value.to_string(),
        })?;
        let net = net.trunc();
        if net.prefix_len() < 24 {
            pool.extend(net.subnets(24).expect("24 >= prefix"));
        } else {
            pool.push(net);
        }
    }
    if pool.is_empty() {
        return Err(NetError::InvalidPool {
            value: value.to_string(),
        });
    }
    Ok(pool)
}

/// The first subnet of `pool` that overlaps nothing in `taken`.
///
/// Pool entries shorter than `prefix` are split into subnets of that length; entries already that
/// long or longer are candidates as they are, so `prefix = 0` means "use the pool entries".
pub fn pick_subnet(pool: &[Ipv4Net], prefix: u8, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    let overlaps = |a: &Ipv4Net| taken.iter().any(|b| a.contains(b) || b.contains(a));
    pool.iter()
        .flat_map(|entry| {
            let entry = entry.trunc();
            let split = entry.prefix_len() < prefix && prefix <= 32;
            let candidates: Box<dyn Iterator<Item = Ipv4Net>> = if split {
                Box::new(entry.subnets(prefix).expect("prefix checked above"))
            } else {
                Box::new(std::iter::once(entry))
            };
            candidates
        })
        .find(|c| !overlaps(c))
}

/// The IPv4 destinations routed on this host (all tables but `local`), default routes left out:
/// a network must not overlap any of them.
pub async fn host_routes() -> Result<Vec<Ipv4Net>, NetError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetError::Io {
        path: "netlink socket".into(),
        source,
    })?;
    let task = tokio::spawn(conn);
    let request = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build();
    let result: Result<Vec<_>, _> = handle.route().get(request).execute().try_collect().await;
    task.abort();
    let messages = result.map_err(NetError::netlink("list routes", "ipv4"))?;
    let mut routes = Vec::new();
    for msg in messages {
        let len = msg.header.destination_prefix_length;
        let table = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(msg.header.table));
        if len == 0 || table == 255 {
            continue;
        }
        let dst = msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(net) = dst.and_then(|ip| Ipv4Net::new(ip, len).ok()) {
            routes.push(net.trunc());
        }
    }
    routes.sort();
    routes.dedup();
    Ok(routes)
}

/// The usable host range of `subnet` (network and broadcast left out), as integers.
fn host_range(subnet: Ipv4Net) -> Option<(u32, u32)> {
    if subnet.prefix_len() >= 31 {
        return None;
    }
    let first = u32::from(subnet.network()) + 1;
    let last = u32::from(subnet.broadcast()) - 1;
    Some((first, last))
}

/// The next address of `subnet` after `after` (wrapping around) that is neither the network,
/// broadcast nor `gateway` address nor in `taken`. Starting after the last handed-out address,
/// like Docker, keeps a just-released address (and stale ARP entries for it) out of use a while.
pub fn next_free_address(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    taken: &BTreeSet<Ipv4Addr>,
    after: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let (first, last) = host_range(subnet)?;
    let start = match after.map(u32::from) {
        Some(a) if a >= first && a < last => a + 1,
        _ => first,
    };
    (start..=last)
        .chain(first..start)
        .map(Ipv4Addr::from)
        .find(|ip| *ip != gateway && !taken.contains(ip))
}

/// Runs `f` on the JSON document at `path` (default when missing) under an exclusive lock, then
/// writes it back atomically (temp file + rename).
fn with_locked_json<T, R>(
    path: &Path,
    f: impl FnOnce(&mut T) -> Result<R, NetError>,
) -> Result<R, NetError>
where
    T: Default + Serialize + DeserializeOwned,
{
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(NetError::io(dir))?;
    }
    let lock_path = sidecar(path, "lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(NetError::io(&lock_path))?;
    lock.lock().map_err(NetError::io(&lock_path))?;
    let mut doc: T = match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| NetError::State {
            path: path.to_path_buf(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => T::default(),
        Err(e) => return Err(NetError::io(path)(e)),
    };
    let out = f(&mut doc)?;
    let tmp = sidecar(path, "tmp");
    let bytes = serde_json::to_vec_pretty(&doc).expect("state documents always serialize");
    // No fsync: the rename is atomic for every process (a killed berth leaves the old or the
    // new document), and what a power loss could cost is address bookkeeping of containers
    // that did not survive it either. An fsync here cost up to 30 ms per container start and
    // removal on a busy disk.
    fs::write(&tmp, bytes).map_err(NetError::io(&tmp))?;
    fs::rename(&tmp, path).map_err(NetError::io(path))?;
    drop(lock);
    Ok(out)
}

fn sidecar(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct SubnetDoc {
    networks: BTreeMap<String, Ipv4Net>,
}

/// Which subnet each network of a state root has, persisted in one JSON file.
#[derive(Debug, Clone)]
pub struct SubnetStore {
    path: PathBuf,
}

impl SubnetStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SubnetStore { path: path.into() }
    }

    /// The network's subnet: the recorded one, or a new one from `pool` that overlaps neither
    /// `host_routes` nor any network already recorded here.
    pub fn allocate(
        &self,
        network: &str,
        pool: &[Ipv4Net],
        prefix: u8,
        host_routes: &[Ipv4Net],
    ) -> Result<Ipv4Net, NetError> {
        with_locked_json(&self.path, |doc: &mut SubnetDoc| {
            if let Some(net) = doc.networks.get(network) {
                return Ok(*net);
            }
            let mut taken: Vec<Ipv4Net> = doc.networks.values().copied().collect();
            taken.extend_from_slice(host_routes);
            let net =
                pick_subnet(pool, prefix, &taken).ok_or_else(|| NetError::SubnetsExhausted {
                    network: network.to_string(),
                })?;
            doc.networks.insert(network.to_string(), net);
            Ok(net)
        })
    }

    /// Records a subnet the user chose (compose `ipam.config`).
    pub fn record(&self, network: &str, subnet: Ipv4Net) -> Result<(), NetError> {
        with_locked_json(&self.path, |doc: &mut SubnetDoc| {
            doc.networks.insert(network.to_string(), subnet.trunc());
            Ok(())
        })
    }

    /// Forgets the network's subnet; missing is fine.
    pub fn release(&self, network: &str) -> Result<Option<Ipv4Net>, NetError> {
        with_locked_json(&self.path, |doc: &mut SubnetDoc| {
            Ok(doc.networks.remove(network))
        })
    }

    /// All recorded networks and their subnets.
    pub fn list(&self) -> Result<BTreeMap<String, Ipv4Net>, NetError> {
        with_locked_json(&self.path, |doc: &mut SubnetDoc| Ok(doc.networks.clone()))
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct AddressDoc {
    /// The address handed out last; the next search starts after it.
    last: Option<Ipv4Addr>,
    /// address → owner (a container name)
    addresses: BTreeMap<Ipv4Addr, String>,
}

/// Hands out the addresses of one network's subnet, persisted in a JSON file per network.
///
/// Addresses are keyed by owner, so allocating again for the same owner (a re-run `up` after a
/// crash) returns the same address.
#[derive(Debug, Clone)]
pub struct AddressAllocator {
    path: PathBuf,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    /// Dynamic addresses come from here only (compose `ip_range`); static ones from `subnet`.
    range: Option<Ipv4Net>,
}

impl AddressAllocator {
    pub fn new(path: impl Into<PathBuf>, subnet: Ipv4Net, gateway: Ipv4Addr) -> Self {
        AddressAllocator {
            path: path.into(),
            subnet: subnet.trunc(),
            gateway,
            range: None,
        }
    }

    /// Hands out dynamic addresses from `range` only (a part of the subnet).
    pub fn with_range(mut self, range: Option<Ipv4Net>) -> Self {
        self.range = range.map(|r| r.trunc());
        self
    }

    /// The owner's address, or the next free one.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, NetError> {
        with_locked_json(&self.path, |doc: &mut AddressDoc| {
            if let Some((ip, _)) = doc.addresses.iter().find(|(_, o)| *o == owner) {
                return Ok(*ip);
            }
            let taken: BTreeSet<Ipv4Addr> = doc.addresses.keys().copied().collect();
            let pool = self.range.unwrap_or(self.subnet);
            let ip = next_free_address(pool, self.gateway, &taken, doc.last)
                .ok_or(NetError::AddressesExhausted { subnet: pool })?;
            doc.addresses.insert(ip, owner.to_string());
            doc.last = Some(ip);
            Ok(ip)
        })
    }

    /// Gives `owner` the address it asked for (compose `ipv4_address`).
    pub fn allocate_static(&self, owner: &str, ip: Ipv4Addr) -> Result<(), NetError> {
        let unavailable = |reason: &str| NetError::AddressUnavailable {
            ip,
            subnet: self.subnet,
            reason: reason.to_string(),
        };
        let usable = host_range(self.subnet)
            .is_some_and(|(first, last)| (first..=last).contains(&u32::from(ip)));
        if !usable {
            return Err(unavailable("not a host address of the subnet"));
        }
        if ip == self.gateway {
            return Err(unavailable("it is the gateway"));
        }
        with_locked_json(&self.path, |doc: &mut AddressDoc| {
            match doc.addresses.get(&ip) {
                Some(o) if o != owner => {
                    return Err(unavailable(&format!("already in use by {o}")));
                }
                _ => {}
            }
            doc.addresses.retain(|_, o| o != owner);
            doc.addresses.insert(ip, owner.to_string());
            Ok(())
        })
    }

    /// Frees the owner's address; an owner without one is fine.
    pub fn release(&self, owner: &str) -> Result<Option<Ipv4Addr>, NetError> {
        with_locked_json(&self.path, |doc: &mut AddressDoc| {
            let ip = doc
                .addresses
                .iter()
                .find(|(_, o)| *o == owner)
                .map(|(ip, _)| *ip);
            if let Some(ip) = ip {
                doc.addresses.remove(&ip);
            }
            Ok(ip)
        })
    }

    /// Every allocated address and its owner.
    pub fn list(&self) -> Result<BTreeMap<Ipv4Addr, String>, NetError> {
        with_locked_json(&self.path, |doc: &mut AddressDoc| Ok(doc.addresses.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn docker_pool_shape() {
        let pool = docker_pool();
        assert_eq!(pool[0], net("172.17.0.0/16"));
        assert_eq!(pool[14], net("172.31.0.0/16"));
        assert_eq!(pool[15], net("192.168.0.0/20"));
        assert_eq!(pool.len(), 15 + 16);
    }

    #[test]
    fn pool_from_env_value_is_split_into_24s() {
        let pool = parse_pool("10.213.0.0/16").unwrap();
        assert_eq!(pool.len(), 256);
        assert_eq!(pool[1], net("10.213.1.0/24"));
        let pool = parse_pool(" 10.1.2.0/24 , 10.9.0.0/23").unwrap();
        assert_eq!(
            pool,
            vec![net("10.1.2.0/24"), net("10.9.0.0/24"), net("10.9.1.0/24")]
        );
        assert!(matches!(
            parse_pool("10.0.0.0/33"),
            Err(NetError::InvalidPool { .. })
        ));
        assert!(parse_pool(",").is_err());
    }

    #[test]
    fn pick_skips_routes_and_taken_subnets() {
        let pool = docker_pool();
        // 172.17/16 is docker0's, 172.18.5.0/24 is a host route inside 172.18/16.
        let taken = [net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(pick_subnet(&pool, 0, &taken), Some(net("172.19.0.0/16")));
        // A route covering the candidate also blocks it.
        let taken = [net("172.16.0.0/12")];
        assert_eq!(pick_subnet(&pool, 0, &taken), Some(net("192.168.0.0/20")));
    }

    #[test]
    fn pick_splits_entries_when_asked_for_longer_prefix() {
        let pool = [net("10.213.0.0/16")];
        let taken = [net("10.213.0.0/24"), net("10.213.1.128/25")];
        assert_eq!(pick_subnet(&pool, 24, &taken), Some(net("10.213.2.0/24")));
        // Entries longer than the prefix are used as they are.
        let pool = [net("10.213.7.0/26")];
        assert_eq!(pick_subnet(&pool, 24, &[]), Some(net("10.213.7.0/26")));
    }

    #[test]
    fn pick_exhausted() {
        let pool = [net("10.213.0.0/24")];
        assert_eq!(pick_subnet(&pool, 0, &[net("10.0.0.0/8")]), None);
    }

    #[test]
    fn next_free_skips_special_addresses_and_wraps() {
        let subnet = net("10.213.9.0/29"); // hosts .1 - .6
        let gw = Ipv4Addr::new(10, 213, 9, 1);
        let mut taken = BTreeSet::new();
        assert_eq!(
            next_free_address(subnet, gw, &taken, None),
            Some(Ipv4Addr::new(10, 213, 9, 2))
        );
        taken.insert(Ipv4Addr::new(10, 213, 9, 2));
        // Continue after the last one handed out, even if lower ones are free.
        assert_eq!(
            next_free_address(subnet, gw, &taken, Some(Ipv4Addr::new(10, 213, 9, 4))),
            Some(Ipv4Addr::new(10, 213, 9, 5))
        );
        // Wrap around past the broadcast address, skipping the gateway.
        assert_eq!(
            next_free_address(subnet, gw, &taken, Some(Ipv4Addr::new(10, 213, 9, 6))),
            Some(Ipv4Addr::new(10, 213, 9, 3))
        );
        for i in 2..=6 {
            taken.insert(Ipv4Addr::new(10, 213, 9, i));
        }
        assert_eq!(next_free_address(subnet, gw, &taken, None), None);
        assert_eq!(
            next_free_address(net("10.0.0.0/31"), gw, &BTreeSet::new(), None),
            None
        );
    }

    #[test]
    fn allocator_persists_and_is_idempotent_per_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam/net.json");
        let subnet = net("10.213.9.0/29");
        let gw = Ipv4Addr::new(10, 213, 9, 1);
        let a = AddressAllocator::new(&path, subnet, gw);
        let ip1 = a.allocate("web-1").unwrap();
        assert_eq!(ip1, Ipv4Addr::new(10, 213, 9, 2));
        assert_eq!(a.allocate("web-1").unwrap(), ip1);
        // A second allocator on the same file sees the first one's work.
        let b = AddressAllocator::new(&path, subnet, gw);
        let ip2 = b.allocate("web-2").unwrap();
        assert_eq!(ip2, Ipv4Addr::new(10, 213, 9, 3));
        assert_eq!(a.release("web-1").unwrap(), Some(ip1));
        assert_eq!(a.release("web-1").unwrap(), None);
        // The freed .2 is not reused right away.
        assert_eq!(a.allocate("web-3").unwrap(), Ipv4Addr::new(10, 213, 9, 4));
        a.allocate_static("db", Ipv4Addr::new(10, 213, 9, 6))
            .unwrap();
        let err = a
            .allocate_static("other", Ipv4Addr::new(10, 213, 9, 6))
            .unwrap_err();
        assert!(err.to_string().contains("already in use by db"), "{err}");
        assert!(a.allocate_static("x", gw).is_err());
        assert!(
            a.allocate_static("x", Ipv4Addr::new(10, 213, 9, 7))
                .is_err()
        );
        assert_eq!(a.allocate("web-4").unwrap(), Ipv4Addr::new(10, 213, 9, 5));
        assert_eq!(a.allocate("web-5").unwrap(), Ipv4Addr::new(10, 213, 9, 2));
        assert!(matches!(
            a.allocate("web-6"),
            Err(NetError::AddressesExhausted { .. })
        ));
        assert_eq!(a.list().unwrap().len(), 5);
    }

    #[test]
    fn subnet_store_avoids_recorded_and_routed_subnets() {
        let dir = tempfile::tempdir().unwrap();
        let store = SubnetStore::new(dir.path().join("subnets.json"));
        let pool = parse_pool("10.213.0.0/22").unwrap();
        let routes = [net("10.213.0.0/24")];
        let a = store.allocate("p_default", &pool, 0, &routes).unwrap();
        assert_eq!(a, net("10.213.1.0/24"));
        assert_eq!(store.allocate("p_default", &pool, 0, &routes).unwrap(), a);
        let b = store.allocate("p_back", &pool, 0, &routes).unwrap();
        assert_eq!(b, net("10.213.2.0/24"));
        store.record("p_static", net("10.213.3.0/24")).unwrap();
        assert!(matches!(
            store.allocate("p_more", &pool, 0, &routes),
            Err(NetError::SubnetsExhausted { .. })
        ));
        assert_eq!(store.release("p_back").unwrap(), Some(b));
        assert_eq!(store.list().unwrap().len(), 2);
    }

    #[test]
    fn corrupt_state_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subnets.json");
        fs::write(&path, b"{not json").unwrap();
        let err = SubnetStore::new(&path).list().unwrap_err();
        assert!(err.to_string().contains("subnets.json"), "{err}");
    }

    #[tokio::test]
    async fn host_routes_has_no_default_route() {
        let routes = host_routes().await.unwrap();
        assert!(routes.iter().all(|r| r.prefix_len() > 0));
    }
}
