//! `berth port` and `berth network …`: published ports of a service, and networks by hand.
use super::Global;
use super::output;
use crate::project::{net_host, network};
use crate::state::Paths;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

#[derive(Debug, clap::Args)]
pub struct PortArgs {
    /// The protocol of the private port.
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Index of the container if the service has multiple replicas.
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    pub service: String,
    /// The container port, optionally with `/tcp` or `/udp`.
    pub private_port: String,
}

/// Prints `IP:PORT`, the host address a container port is published on.
pub fn port(paths: &Paths, g: &Global, a: &PortArgs) -> Result<i32> {
    let name = super::project::project_name(g)?;
    let rec = super::project::service_container(paths, &name, &a.service, a.index)?;
    let (port, proto) = match a.private_port.split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (a.private_port.as_str(), a.protocol.as_str()),
    };
    let port: u16 = port
        .parse()
        .with_context(|| format!("{port:?} is not a port number"))?;
    let st = rec.state(paths)?;
    let Some(i) = rec
        .ports
        .iter()
        .position(|p| p.container_port == port && p.protocol == proto)
    else {
        bail!(
            "no port {port}/{proto} published for service {:?}",
            a.service
        );
    };
    let p = &rec.ports[i];
    let bound = st.ports.get(i).copied().unwrap_or(p.host_port);
    match (p.host_ip6, p.host_ip) {
        (Some(v6), _) => output::data(&format!("[{v6}]:{bound}")),
        (None, ip) => output::data(&format!(
            "{}:{bound}",
            ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
        )),
    }
    Ok(0)
}

#[derive(Debug, clap::Subcommand)]
pub enum NetworkCommand {
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only display network names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create a network.
    Create {
        /// Restrict external access to the network.
        #[arg(long)]
        internal: bool,
        /// Network driver (only bridge).
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// Set metadata on a network.
        #[arg(long = "label", value_name = "KEY=VAL")]
        labels: Vec<String>,
        /// Subnet in CIDR format (repeat it for an IPv4 and an IPv6 one).
        #[arg(long)]
        subnet: Vec<String>,
        /// Gateway for a subnet (goes with the subnet that contains it).
        #[arg(long)]
        gateway: Vec<String>,
        /// Allocate container addresses from a sub-range.
        #[arg(long)]
        ip_range: Option<String>,
        /// Enable IPv6 (a ULA /64 is picked when no IPv6 subnet is given).
        #[arg(long)]
        ipv6: bool,
        /// Driver options (com.docker.network.driver.mtu, com.docker.network.bridge.name).
        #[arg(short, long = "opt", value_name = "KEY=VAL")]
        opts: Vec<String>,
        name: String,
    },
    /// Remove one or more networks.
    #[command(alias = "remove")]
    Rm { names: Vec<String> },
    /// Display detailed information on one or more networks (JSON).
    Inspect { names: Vec<String> },
    /// Connect a container to a network.
    Connect {
        /// Add a network-scoped alias for the container.
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// IPv4 address.
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        /// IPv6 address.
        #[arg(long)]
        ip6: Option<std::net::Ipv6Addr>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// Accepted for compatibility.
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove all networks no container uses.
    Prune {
        /// Do not prompt for confirmation (berth never prompts).
        #[arg(short, long)]
        force: bool,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Names of the containers attached to each network.
fn users(paths: &Paths) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in crate::engine::container::list(paths)? {
        for n in &c.networks {
            out.entry(n.network.clone())
                .or_default()
                .push(c.name.clone());
        }
    }
    Ok(out)
}

/// A container by name or id prefix.
fn find_container(paths: &Paths, name: &str) -> Result<crate::engine::container::ContainerRecord> {
    crate::engine::container::list(paths)?
        .into_iter()
        .find(|c| c.name == name || (name.len() >= 4 && c.id.starts_with(name)))
        .with_context(|| format!("no such container: {name}"))
}

/// `--subnet`/`--gateway`/`--ip-range` as compose `ipam.config` entries: each gateway goes
/// with the subnet that contains it, the range with the first subnet (as `docker network
/// create` pairs them).
fn ipam_pools(
    subnets: &[String],
    gateways: &[String],
    ip_range: Option<String>,
) -> Vec<crate::compose::IpamPool> {
    let contains = |subnet: &str, ip: &str| {
        let (Ok(net), Ok(ip)) = (
            subnet.parse::<ipnet::IpNet>(),
            ip.parse::<std::net::IpAddr>(),
        ) else {
            return false;
        };
        net.contains(&ip)
    };
    let mut pools: Vec<crate::compose::IpamPool> = subnets
        .iter()
        .enumerate()
        .map(|(i, s)| crate::compose::IpamPool {
            subnet: Some(s.clone()),
            gateway: gateways
                .iter()
                .find(|g| contains(s, g))
                .or(if subnets.len() == 1 {
                    gateways.first()
                } else {
                    None
                })
                .cloned(),
            ip_range: if i == 0 { ip_range.clone() } else { None },
            ..Default::default()
        })
        .collect();
    pools.sort_by_key(|p| p.subnet.as_deref().is_some_and(|s| s.contains(':')));
    pools
}

/// `IPAM.Config` of `network inspect`: the IPv4 entry, then the IPv6 one.
fn ipam_config(n: &crate::net::BridgeNetwork) -> Vec<serde_json::Value> {
    let mut out =
        vec![serde_json::json!({"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()})];
    if let (Some(net6), Some(gw6)) = (n.subnet6, n.gateway6) {
        out.push(serde_json::json!({"Subnet": net6.to_string(), "Gateway": gw6.to_string()}));
    }
    out
}

pub fn network(paths: &Paths, cmd: NetworkCommand) -> Result<i32> {
    let host = net_host(paths);
    match cmd {
        NetworkCommand::Ls { quiet } => {
            let nets = network::list(paths)?;
            if !quiet {
                output::data(&format!(
                    "{:<30} {:<8} {:<20} {}",
                    "NAME", "DRIVER", "SUBNET", "PROJECT"
                ));
            }
            for r in nets {
                if quiet {
                    output::data(&r.network.name);
                    continue;
                }
                let project = r
                    .labels
                    .get(crate::engine::container::labels::PROJECT)
                    .cloned()
                    .unwrap_or_default();
                output::data(&format!(
                    "{:<30} {:<8} {:<20} {}",
                    r.network.name, "bridge", r.network.subnet, project
                ));
            }
        }
        NetworkCommand::Create {
            internal,
            driver,
            labels,
            subnet,
            gateway,
            ip_range,
            ipv6,
            opts,
            name,
        } => {
            if network::load(paths, &name)?.is_some() {
                bail!("network with name {name} already exists");
            }
            let pairs = |v: &[String]| -> BTreeMap<String, String> {
                v.iter()
                    .map(|l| {
                        let (k, v) = l.split_once('=').unwrap_or((l, ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            };
            let compose = crate::compose::Network {
                driver: Some(driver),
                internal,
                driver_opts: pairs(&opts),
                ipam: (!subnet.is_empty()).then(|| crate::compose::Ipam {
                    config: ipam_pools(&subnet, &gateway, ip_range),
                    ..Default::default()
                }),
                enable_ipv6: ipv6.then_some(true),
                ..Default::default()
            };
            let spec = network::NetworkSpec::from_compose(&name, &compose)?;
            let labels = pairs(&labels);
            runtime()?.block_on(network::ensure(paths, &host, &name, &spec, &labels))?;
            output::data(&name);
        }
        NetworkCommand::Rm { names } => {
            let used = users(paths)?;
            for name in names {
                let Some(r) = network::load(paths, &name)? else {
                    bail!("network {name} not found");
                };
                if let Some(c) = used.get(&name) {
                    bail!(
                        "error while removing network: network {name} has active endpoints ({})",
                        c.join(", ")
                    );
                }
                runtime()?.block_on(network::remove(paths, &host, &r.network))?;
                output::data(&name);
            }
        }
        NetworkCommand::Inspect { names } => {
            let used = users(paths)?;
            let mut all = Vec::new();
            for name in names {
                let Some(r) = network::load(paths, &name)? else {
                    bail!("network {name} not found");
                };
                let n = &r.network;
                all.push(serde_json::json!({
                    "Name": n.name,
                    "Driver": "bridge",
                    "Internal": n.internal,
                    "EnableIPv6": n.subnet6.is_some(),
                    "IPAM": {"Config": ipam_config(n)},
                    "Options": {"com.docker.network.bridge.name": n.bridge},
                    "Labels": r.labels,
                    "Containers": used.get(&n.name).cloned().unwrap_or_default(),
                }));
            }
            output::data(&serde_json::to_string_pretty(&all)?);
        }
        NetworkCommand::Connect {
            aliases,
            ip,
            ip6,
            network: name,
            container,
        } => {
            let Some(r) = network::load(paths, &name)? else {
                bail!("network {name} not found");
            };
            let mut rec = find_container(paths, &container)?;
            runtime()?.block_on(network::connect(
                paths,
                &host,
                &mut rec,
                &r.network,
                (ip, ip6),
                &aliases,
            ))?;
        }
        NetworkCommand::Disconnect {
            force: _,
            network: name,
            container,
        } => {
            let mut rec = find_container(paths, &container)?;
            runtime()?.block_on(network::disconnect(paths, &host, &mut rec, &name))?;
        }
        NetworkCommand::Prune { force: _ } => {
            let used = users(paths)?;
            let mut deleted = Vec::new();
            for r in network::list(paths)? {
                if !used.contains_key(&r.network.name) {
                    runtime()?.block_on(network::remove(paths, &host, &r.network))?;
                    deleted.push(r.network.name);
                }
            }
            if !deleted.is_empty() {
                output::data("Deleted Networks:");
                for d in deleted {
                    output::data(&d);
                }
            }
        }
    }
    Ok(0)
}
