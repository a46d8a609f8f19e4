//! The one error type of the network layer. Every variant names its subject.
use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::Protocol;

/// What can go wrong while creating or removing networks, namespaces, links and rules.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink request failed.
    #[error("netlink: {op} {subject}: {source}")]
    Netlink {
        op: &'static str,
        subject: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// A link we need is not there.
    #[error("network interface {name} not found")]
    LinkNotFound { name: String },
    /// An interface name longer than the kernel's 15 characters, or empty.
    #[error("invalid interface name {name:?}: 1 to 15 characters, no '/' or whitespace")]
    InvalidIfname { name: String },
    /// An nftables table name we would not dare to pass to `nft`.
    #[error("invalid nftables table name {name:?}: letters, digits and '_' only")]
    InvalidTableName { name: String },
    /// `nft` could not be run at all.
    #[error("cannot run nft (install the nftables package): {source}")]
    NftExec {
        #[source]
        source: std::io::Error,
    },
    /// `nft` ran and rejected the script.
    #[error("nft {op} failed: {stderr}")]
    Nft { op: String, stderr: String },
    /// Creating, entering or removing a network namespace failed.
    #[error("network namespace {path}: {op}: {source}")]
    Netns {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A file of ours (state, lock, sysctl) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A state file holds something that is not what we wrote.
    #[error("{path}: invalid state file: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A published host port that is neither a port nor a range.
    #[error("invalid published port {value:?}: expected a port or a range like 8000-8010")]
    InvalidPorts { value: String },
    /// The host port is held by someone else.
    #[error("Bind for {}:{port}/{protocol} failed: port is already allocated", host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED))]
    PortAllocated {
        host_ip: Option<Ipv4Addr>,
        port: u16,
        protocol: Protocol,
    },
    /// Binding the host port failed for another reason (permission, no such address).
    #[error("cannot bind {}:{port}/{protocol}: {source}", host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED))]
    PortBind {
        host_ip: Option<Ipv4Addr>,
        port: u16,
        protocol: Protocol,
        #[source]
        source: std::io::Error,
    },
    /// Every subnet of the pool overlaps a host route or another network.
    #[error(
        "no free subnet left in the address pool for network {network} (hint: remove unused networks or set BERTH_SUBNET_POOL)"
    )]
    SubnetsExhausted { network: String },
    /// Every address of the subnet is taken.
    #[error("no free address left in subnet {subnet}")]
    AddressesExhausted { subnet: ipnet::Ipv4Net },
    /// A requested static address is unusable.
    #[error("address {ip} in subnet {subnet}: {reason}")]
    AddressUnavailable {
        ip: Ipv4Addr,
        subnet: ipnet::Ipv4Net,
        reason: String,
    },
    /// A pool given in `BERTH_SUBNET_POOL` is not a list of IPv4 CIDRs.
    #[error("BERTH_SUBNET_POOL: {value:?} is not a comma separated list of IPv4 subnets")]
    InvalidPool { value: String },
}

impl NetError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| NetError::Io { path, source }
    }

    pub(crate) fn netlink(
        op: &'static str,
        subject: impl Into<String>,
    ) -> impl FnOnce(rtnetlink::Error) -> Self {
        let subject = subject.into();
        move |source| NetError::Netlink {
            op,
            subject,
            source,
        }
    }
}
