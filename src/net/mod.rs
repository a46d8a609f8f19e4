//! Bridges, addresses, firewall and published ports for containers.
//!
//! The network layer is a pure "apply this": the caller (the project executor) decides which
//! networks exist, which subnet and address each container gets (with the helpers in [`ipam`])
//! and which ports are published; this module makes the kernel match. The one design decision to
//! know: **all firewall state lives in one nftables table per state root**, holding sets of our
//! bridges and subnets and maps of published ports. Joining a network or publishing a port is an
//! element added to a set or map in one `nft -f -` transaction; rules never change per
//! container, so nothing has to track rule handles, and re-running [`NetHost::ensure_network`]
//! repairs a flushed ruleset.
//!
//! Every operation is idempotent, so `down` and crash recovery can simply run it again.
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod dns;
mod error;
pub mod firewall;
pub mod ipam;
mod iptsock;
mod link;
pub use link::{derived_mac, format_mac};
pub mod netns;
mod nftgen;
mod nftset;
pub mod ports;
pub mod proxy;

pub use error::NetError;
pub use ipam::{AddressAllocator, SubnetStore, default_pool, host_routes, pick_subnet};
pub use netns::{create_netns, remove_netns};
pub use ports::{parse_host_ports, reserve_port, reserve_range};

/// Where the network layer of one state root keeps its host-wide things.
#[derive(Debug, Clone)]
pub struct NetHost {
    /// Directory for netns files and the network lock (e.g. `/run/berth/net`).
    pub run_dir: PathBuf,
    /// Name of the `inet` nftables table, e.g. `berth` or `berth_<hash>` per state root.
    pub table: String,
    /// Port (un)publishes of concurrent threads, sent to nft together (shared by clones).
    pub(crate) ports: std::sync::Arc<firewall::Batch>,
}

impl NetHost {
    /// A host handle; nothing is created until a network is ensured.
    pub fn new(run_dir: impl Into<PathBuf>, table: impl Into<String>) -> Self {
        NetHost {
            run_dir: run_dir.into(),
            table: table.into(),
            ports: Default::default(),
        }
    }
}

/// A bridge network as the kernel sees it: one Linux bridge, one IPv4 subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeNetwork {
    /// The compose network's full name, e.g. `hello_default`.
    pub name: String,
    /// The bridge interface name, at most 15 characters, e.g. `br-<12 hex>`.
    pub bridge: String,
    pub subnet: ipnet::Ipv4Net,
    /// The bridge's own address, the containers' default gateway.
    pub gateway: Ipv4Addr,
    /// No route out and no forwarding to other interfaces.
    pub internal: bool,
    /// Compose `com.docker.network.driver.mtu`; the default route's MTU otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Compose `ipam.config[].ip_range`: where dynamic addresses come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<ipnet::Ipv4Net>,
    /// Compose `enable_ipv6`: the IPv6 subnet (given, or a /64 of a ULA prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<ipnet::Ipv6Net>,
    /// The bridge's IPv6 address, the containers' IPv6 default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
}

impl BridgeNetwork {
    /// A container's IPv6 address when none is asked for: the IPv6 subnet plus the offset its
    /// IPv4 address has in the IPv4 subnet (unique because the IPv4 one is), moved past the
    /// IPv6 gateway if they meet.
    pub fn address6_for(&self, ip: Ipv4Addr) -> Option<Ipv6Addr> {
        let net = self.subnet6?;
        let offset = u128::from(u32::from(ip).wrapping_sub(u32::from(self.subnet.network())));
        let base = u128::from(net.network());
        let mut addr = Ipv6Addr::from(base | offset);
        if Some(addr) == self.gateway6 {
            addr = Ipv6Addr::from(base | (1u128 << 32) | offset);
        }
        Some(addr)
    }
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One published port: host `host_ip:host_port/protocol` goes to `container_ip:container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// `None` means every host address (`0.0.0.0`).
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub protocol: Protocol,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// Checks a Linux interface name: 1–15 bytes, no `/`, no whitespace, not `.`/`..`.
pub fn check_ifname(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains(['/', ':', '"'])
        && !name.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(NetError::InvalidIfname {
            name: name.to_string(),
        })
    }
}
