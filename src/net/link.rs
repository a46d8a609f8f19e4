//! Links through rtnetlink: the bridge of a network and the veth pair of a container.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute};
use rtnetlink::packet_route::route::RouteAttribute;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::{BridgeNetwork, NetError, NetHost, check_ifname, netns};

/// A host-namespace netlink connection whose background task ends with it.
pub(crate) struct Netlink {
    pub handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Netlink {
    pub fn connect() -> Result<Self, NetError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(NetError::io("netlink socket"))?;
        Ok(Netlink {
            handle,
            task: tokio::spawn(conn),
        })
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// The index of link `name`, or `None` when it does not exist.
pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let found = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    match found {
        Ok(msg) => Ok(msg.map(|m| m.header.index)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(NetError::netlink("get link", name)(e)),
    }
}

async fn require_index(handle: &Handle, name: &str) -> Result<u32, NetError> {
    link_index(handle, name)
        .await?
        .ok_or_else(|| NetError::LinkNotFound {
            name: name.to_string(),
        })
}

/// Sets link `name` up.
pub(crate) async fn set_up(handle: &Handle, name: &str) -> Result<(), NetError> {
    let index = require_index(handle, name).await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(NetError::netlink("set up", name))
}

/// Adds `ip/prefix` to the link; an address already there is fine. IPv6 addresses skip
/// duplicate address detection (we allocate them), so they are usable at once.
async fn add_address(
    handle: &Handle,
    index: u32,
    name: &str,
    ip: impl Into<IpAddr>,
    prefix: u8,
) -> Result<(), NetError> {
    use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
    let ip = ip.into();
    let mut req = handle.address().add(index, ip, prefix).replace();
    if ip.is_ipv6() {
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute().await.map_err(NetError::netlink(
        "add address",
        format!("{ip}/{prefix} on {name}"),
    ))
}

/// Deletes link `name`; a missing link is fine.
pub(crate) async fn delete_link(handle: &Handle, name: &str) -> Result<(), NetError> {
    let Some(index) = link_index(handle, name).await? else {
        return Ok(());
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(NetError::netlink("delete link", name)(e)),
    }
}

/// The MTU of the interface the IPv4 default route leaves through, if there is one.
async fn default_route_mtu(handle: &Handle) -> Result<Option<u32>, NetError> {
    let routes: Vec<_> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(NetError::netlink("list routes", "default"))?;
    let oif = routes
        .iter()
        .filter(|r| r.header.destination_prefix_length == 0 && r.header.table == 254)
        .find_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })
        });
    let Some(oif) = oif else { return Ok(None) };
    let link = handle
        .link()
        .get()
        .match_index(oif)
        .execute()
        .try_next()
        .await
        .map_err(NetError::netlink("get link", format!("index {oif}")))?;
    Ok(link.and_then(|l| {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
    }))
}

/// A random locally administered unicast MAC. Giving the bridge its own address at creation
/// pins it: otherwise the kernel copies the lowest port MAC, which changes as containers come
/// and go and leaves stale ARP entries in the peers.
/// The MAC address a container gets on a network where it asked for none: `02:42:` followed
/// by its IPv4 address (unique on the bridge, as the address is).
pub fn derived_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

fn random_mac() -> Vec<u8> {
    let mut mac: [u8; 6] = rand::random();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac.to_vec()
}

fn write_sysctl(path: &str, value: &str) -> Result<(), NetError> {
    match std::fs::read_to_string(path) {
        Ok(cur) if cur.trim() == value => return Ok(()),
        _ => {}
    }
    std::fs::write(path, value).map_err(NetError::io(path))
}

/// The per-bridge sysctls. `route_localnet=1` lets host → 127.0.0.1:port DNAT leave through the
/// bridge; the firewall's raw drop of 127/8 arriving on our bridges (CVE-2020-8558) must be in
/// place first, which `ensure_network` guarantees by applying the firewall before this.
fn bridge_sysctls(n: &BridgeNetwork) -> Result<(), NetError> {
    let conf = format!("/proc/sys/net/ipv4/conf/{}", n.bridge);
    write_sysctl(&format!("{conf}/rp_filter"), "2")?;
    if !n.internal {
        write_sysctl(&format!("{conf}/route_localnet"), "1")?;
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        if n.subnet6.is_some() {
            // As Docker does for IPv6 networks: the host routes IPv6 (an uplink configured
            // by router advertisements then needs accept_ra=2, as with Docker).
            write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
        }
    }
    Ok(())
}

async fn ensure_bridge(handle: &Handle, n: &BridgeNetwork) -> Result<(), NetError> {
    let index = match link_index(handle, &n.bridge).await? {
        Some(index) => index,
        None => {
            let mut bridge = LinkBridge::new(&n.bridge).address(random_mac());
            if let Some(mtu) = n.mtu.or(default_route_mtu(handle).await?) {
                bridge = bridge.mtu(mtu);
            }
            match handle.link().add(bridge.build()).execute().await {
                Ok(()) => {}
                // Someone else created it between our look and our add.
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(NetError::netlink("create bridge", &n.bridge)(e)),
            }
            require_index(handle, &n.bridge).await?
        }
    };
    add_address(handle, index, &n.bridge, n.gateway, n.subnet.prefix_len()).await?;
    if let (Some(net6), Some(gw6)) = (n.subnet6, n.gateway6) {
        let conf = format!("/proc/sys/net/ipv6/conf/{}", n.bridge);
        write_sysctl(&format!("{conf}/disable_ipv6"), "0")?;
        write_sysctl(&format!("{conf}/accept_ra"), "0")?;
        add_address(handle, index, &n.bridge, gw6, net6.prefix_len()).await?;
    }
    set_up(handle, &n.bridge).await
}

impl NetHost {
    /// Makes the network exist: bridge up with the gateway address, firewall elements and rules,
    /// per-bridge sysctls. Idempotent; calling it again repairs a flushed ruleset.
    pub async fn ensure_network(&self, n: &BridgeNetwork) -> Result<(), NetError> {
        check_ifname(&n.bridge)?;
        let nl = Netlink::connect()?;
        ensure_bridge(&nl.handle, n).await?;
        let _lock = self.lock()?;
        self.apply_network_firewall(n)?;
        bridge_sysctls(n)
    }

    /// Removes the network: firewall first, then the bridge. Idempotent.
    pub async fn remove_network(&self, n: &BridgeNetwork) -> Result<(), NetError> {
        self.remove_network_then(n, false).await
    }

    /// [`NetHost::remove_network`]; with `drop_table` (the state root's last network) the whole
    /// nft table goes in the same step, instead of the network's elements and then the table.
    pub async fn remove_network_then(
        &self,
        n: &BridgeNetwork,
        drop_table: bool,
    ) -> Result<(), NetError> {
        check_ifname(&n.bridge)?;
        {
            let _lock = self.lock()?;
            self.remove_network_firewall(n, drop_table)?;
        }
        let nl = Netlink::connect()?;
        delete_link(&nl.handle, &n.bridge).await
    }

    /// Connects the container namespace at `netns` to the network: a veth pair whose container
    /// end is born inside the namespace as `ifname` with address `ip`, and whose host end
    /// `host_ifname` is a port of the bridge. A leftover `host_ifname` from an interrupted run
    /// is replaced.
    pub async fn attach(
        &self,
        netns: &Path,
        n: &BridgeNetwork,
        ip: Ipv4Addr,
        host_ifname: &str,
        ifname: &str,
    ) -> Result<(), NetError> {
        self.attach_with_mac(netns, n, (ip, None), host_ifname, ifname, None)
            .await
    }

    /// [`NetHost::attach`], with the container end's MAC address (compose `mac_address`) and
    /// IPv6 address (compose `ipv6_address`; on an IPv6 network `None` means
    /// [`BridgeNetwork::address6_for`]).
    pub async fn attach_with_mac(
        &self,
        netns: &Path,
        n: &BridgeNetwork,
        (ip, ip6): (Ipv4Addr, Option<Ipv6Addr>),
        host_ifname: &str,
        ifname: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<(), NetError> {
        let ip6 = ip6.or_else(|| n.address6_for(ip));
        check_ifname(host_ifname)?;
        check_ifname(ifname)?;
        let ns = std::fs::File::open(netns).map_err(|source| NetError::Netns {
            path: netns.to_path_buf(),
            op: "open",
            source,
        })?;
        let nl = Netlink::connect()?;
        let h = &nl.handle;
        let bridge = require_index(h, &n.bridge).await?;
        let mtu = h
            .link()
            .get()
            .match_index(bridge)
            .execute()
            .try_next()
            .await
            .map_err(NetError::netlink("get link", &n.bridge))?
            .and_then(|l| {
                l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Mtu(m) => Some(*m),
                    _ => None,
                })
            });
        delete_link(h, host_ifname).await?;
        let mut peer =
            LinkUnspec::new_with_name(ifname).setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(&ns));
        // Without one asked for, Docker's classic address: `02:42:` and the IPv4 address, the
        // same for an address's next holder, so peers' ARP caches stay right (`inspect` shows it).
        peer = peer.address(mac.unwrap_or_else(|| derived_mac(ip)).to_vec());
        // One queue each way, asked for rather than cut down to: the kernel makes a veth with a
        // queue per CPU and then reduces it to one, which waits for an expedited RCU grace
        // period per end under the RTNL lock (what every veth ends up with either way).
        peer = peer
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1));
        let mut veth = LinkVeth::new(host_ifname, ifname)
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1));
        if let Some(mtu) = mtu {
            peer = peer.mtu(mtu);
            veth = veth.mtu(mtu);
        }
        // Made on the bridge and up in the same request: a separate look-up of the new link
        // would make the kernel settle its pending carrier change first (`linkwatch_sync_dev`),
        // another expedited RCU grace period.
        let veth = veth
            .controller(bridge)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        h.link()
            .add(veth)
            .execute()
            .await
            .map_err(NetError::netlink(
                "create veth",
                format!("{host_ifname} on {} to {}", n.bridge, netns.display()),
            ))?;
        drop(ns);
        let (ifname, prefix, gateway) = (
            ifname.to_string(),
            n.subnet.prefix_len(),
            (!n.internal).then_some(n.gateway),
        );
        let v6 = match (n.subnet6, ip6) {
            (Some(net6), Some(ip6)) => Some((ip6, net6.prefix_len(), n.gateway6)),
            _ => None,
        };
        let internal = n.internal;
        let inside = netns::with_netns_handle(netns, move |h| async move {
            set_up(&h, "lo").await?;
            let index = require_index(&h, &ifname).await?;
            add_address(&h, index, &ifname, ip, prefix).await?;
            if let Some((ip6, prefix6, _)) = v6 {
                add_address(&h, index, &ifname, ip6, prefix6).await?;
            }
            set_up(&h, &ifname).await?;
            if let Some((_, _, Some(gw6))) = v6.filter(|_| !internal) {
                let route = RouteMessageBuilder::<Ipv6Addr>::new()
                    .gateway(gw6)
                    .output_interface(index)
                    .build();
                add_route(&h, route, "add IPv6 default route", format!("via {gw6}")).await?;
            }
            if let Some(gw) = gateway {
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gw)
                    .output_interface(index)
                    .build();
                add_route(&h, route, "add default route", format!("via {gw}")).await?;
            }
            Ok(())
        })
        .await;
        if inside.is_err() {
            let _ = delete_link(h, host_ifname).await;
        }
        inside
    }

    /// Deletes the host end of a container's veth (the kernel deletes the other end). Idempotent.
    pub async fn detach(&self, host_ifname: &str) -> Result<(), NetError> {
        check_ifname(host_ifname)?;
        let nl = Netlink::connect()?;
        delete_link(&nl.handle, host_ifname).await
    }

    /// The host-wide network lock of this state root (IPAM callers may take it too).
    pub fn lock(&self) -> Result<std::fs::File, NetError> {
        std::fs::create_dir_all(&self.run_dir).map_err(NetError::io(&self.run_dir))?;
        let path = self.run_dir.join("net.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(NetError::io(&path))?;
        file.lock().map_err(NetError::io(&path))?;
        Ok(file)
    }
}

/// Adds `route`; one that exists already is fine (a repeated attach).
async fn add_route(
    h: &Handle,
    route: rtnetlink::packet_route::route::RouteMessage,
    op: &'static str,
    detail: String,
) -> Result<(), NetError> {
    match h.route().add(route).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(NetError::netlink(op, detail)(e)),
    }
}
